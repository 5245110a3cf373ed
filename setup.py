"""Builds the `maskrcnn` package and its compiled ops, `maskrcnn._C`.

Install (from the repository root, into an environment that already has torch==2.13.0):

    pip install --no-build-isolation -e .

CPU kernels are always built. CUDA kernels are built too when torch has CUDA and `nvcc` is found,
or when FORCE_CUDA=1 (for example to build on a machine without a GPU for one with it).
TORCH_CUDA_ARCH_LIST picks the GPU architectures, as for any torch extension.
"""
import glob
import os
import sys

import torch
from setuptools import find_packages, setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, ROOT)
from maskrcnn._ext import _sources_digest as sources_digest  # noqa: E402  (one digest for build and load)

CSRC = os.path.join(ROOT, "csrc")


def csrc_files(pattern):
    """Files under csrc/ matching a recursive glob pattern, sorted."""
    return sorted(glob.glob(os.path.join(CSRC, pattern), recursive=True))


def want_cuda():
    if os.environ.get("FORCE_CUDA", "0") == "1":
        return True
    return torch.cuda.is_available() and CUDA_HOME is not None


def make_extension():
    cpp_sources = csrc_files("**/*.cpp")
    cuda_sources = csrc_files("**/*.cu")
    define_macros = [
        ("MASKRCNN_SOURCES_DIGEST", '"%s"' % sources_digest(CSRC)),
        ("MASKRCNN_TORCH_VERSION", '"%s"' % torch.__version__),
    ]
    # -fopenmp makes at::parallel_for parallel (it is an inline OpenMP loop); the resulting
    # NEEDED libgomp.so.1 resolves to the copy torch has already loaded, so there is one runtime.
    cxx_flags = ["-O3", "-fopenmp"]
    link_flags = ["-fopenmp"]
    if want_cuda():
        define_macros.append(("WITH_CUDA", None))
        nvcc_flags = [
            "-O3",
            "--expt-relaxed-constexpr",
            "-D__CUDA_NO_HALF_OPERATORS__",
            "-D__CUDA_NO_HALF_CONVERSIONS__",
            "-D__CUDA_NO_HALF2_OPERATORS__",
        ]
        return CUDAExtension(
            "maskrcnn._C",
            cpp_sources + cuda_sources,
            include_dirs=[CSRC],
            define_macros=define_macros,
            extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags},
            extra_link_args=link_flags,
        )
    return CppExtension(
        "maskrcnn._C",
        cpp_sources,
        include_dirs=[CSRC],
        define_macros=define_macros,
        extra_compile_args={"cxx": cxx_flags},
        extra_link_args=link_flags,
    )


setup(
    name="maskrcnn",
    version="0.1.0",
    description="Modular object detection and segmentation (Faster/Mask/Keypoint R-CNN, RetinaNet) in PyTorch",
    python_requires=">=3.10",
    packages=find_packages(exclude=("tests", "tests.*", "configs", "tools", "demo", "benchmarks")),
    ext_modules=[make_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
