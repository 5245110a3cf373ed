"""The repository's root and its command-line scripts (tools/*.py, demo/*.py) imported as modules,
for the tests that call a tool's main() in-process. Imports nothing of the project, so a subprocess
of a test (e.g. a torchrun worker) can use it before maskrcnn is importable."""
import importlib.util
import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def repo_path(relative_path):
    """The absolute path of ``relative_path`` (e.g. "tools/train_net.py", "configs") in the repository."""
    return os.path.join(REPO_ROOT, relative_path)


def load_script(relative_path, module_name):
    """The script ``relative_path`` of the repository, executed as a fresh module ``module_name``
    (not added to sys.modules: each call gives a new module)."""
    path = repo_path(relative_path)
    if not os.path.isfile(path):
        raise FileNotFoundError("load_script: no such script %s" % path)
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
