"""Every CUDA source under csrc/ compiles with this machine's nvcc against the installed torch headers.

The machines that run CI have nvcc but no GPU, so this is where a CUDA kernel that no longer compiles
is caught. Object files only (no link): torch's CPU wheel ships the ATen/c10 CUDA headers but not the
CUDA libraries. The wheel also lacks one generated header, c10/cuda/impl/cuda_cmake_macros.h, which
a CUDA build of torch has; the test writes its one-line equivalent into a temporary include folder.
"""
import glob
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
from torch.utils import cpp_extension

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CUDA_SOURCES = sorted(glob.glob(os.path.join(ROOT, "csrc", "**", "*.cu"), recursive=True))
# One architecture is enough to check that the sources compile; the build picks its own list.
ARCH_FLAGS = ["-gencode", "arch=compute_90,code=sm_90"]


def _nvcc():
    cuda_home = cpp_extension.CUDA_HOME
    if cuda_home and os.path.exists(os.path.join(cuda_home, "bin", "nvcc")):
        return os.path.join(cuda_home, "bin", "nvcc")
    return shutil.which("nvcc")


def _compile(source, shim_dir, out_dir):
    include_flags = [f"-I{shim_dir}", f"-I{os.path.join(ROOT, 'csrc')}"]
    include_flags += [f"-I{path}" for path in cpp_extension.include_paths()]
    obj = os.path.join(out_dir, os.path.relpath(source, ROOT).replace(os.sep, "_") + ".o")
    command = [
        _nvcc(), "-c", source, "-o", obj, "-std=c++20", "-O3", "--expt-relaxed-constexpr",
        "-D__CUDA_NO_HALF_OPERATORS__", "-D__CUDA_NO_HALF_CONVERSIONS__",
        "-D__CUDA_NO_HALF2_OPERATORS__", "-DWITH_CUDA", "-Xcompiler", "-fPIC", "-w",
    ] + ARCH_FLAGS + include_flags
    result = subprocess.run(command, capture_output=True, text=True)
    return source, result.returncode, result.stdout + result.stderr, obj


@pytest.mark.slow
@pytest.mark.skipif(_nvcc() is None, reason="nvcc is not installed on this machine")
def test_every_cuda_source_compiles(tmp_path):
    assert CUDA_SOURCES, "no .cu files found under csrc/"
    shim = tmp_path / "shim" / "c10" / "cuda" / "impl"
    shim.mkdir(parents=True)
    (shim / "cuda_cmake_macros.h").write_text("#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n")
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda s: _compile(s, str(tmp_path / "shim"), str(tmp_path)), CUDA_SOURCES))
    failures = [(src, log) for src, code, log, _ in results if code != 0]
    assert not failures, "\n\n".join(f"{src} failed to compile:\n{log[-4000:]}" for src, log in failures)
    for _, _, _, obj in results:
        assert os.path.getsize(obj) > 0
