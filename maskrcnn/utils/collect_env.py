"""A text report of the software/hardware environment, printed at the start of training."""
import os
import platform
import sys

import numpy as np
import torch


def _compiled_ops_info():
    try:
        from maskrcnn._ext import load_ops

        ops = load_ops()
        return f"yes (torch {ops.torch_version}), compiled_with_cuda={bool(ops.compiled_with_cuda())}"
    except ImportError as e:
        return f"not loadable: {e}"


def collect_env_info():
    """Multi-line "key: value" string: Python, platform, numpy, torch (+ debug build), CUDA that
    torch was built with and whether it is available, cuDNN, GPUs, and maskrcnn's compiled ops
    (whether they load and whether they were compiled with CUDA)."""
    rows = [
        ("Python", sys.version.replace("\n", " ")),
        ("Platform", platform.platform()),
        ("NumPy", np.__version__),
        ("PyTorch", torch.__version__),
        ("PyTorch debug build", torch.version.debug),
        ("PyTorch built with CUDA", torch.version.cuda or "no"),
        ("CUDA available", torch.cuda.is_available()),
    ]
    if torch.cuda.is_available():
        rows.append(("cuDNN", torch.backends.cudnn.version()))
        for i in range(torch.cuda.device_count()):
            rows.append((f"GPU {i}", torch.cuda.get_device_name(i)))
        rows.append(("CUDA_VISIBLE_DEVICES", os.environ.get("CUDA_VISIBLE_DEVICES", "<not set>")))
    rows.append(("CPU threads (torch)", torch.get_num_threads()))
    rows.append(("maskrcnn compiled ops", _compiled_ops_info()))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)
