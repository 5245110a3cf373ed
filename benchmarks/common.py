"""Shared timing and table helpers for the scripts in benchmarks/.

Timings are medians of repeated runs; when a peer implementation (torchvision) is importable the two
are run alternately in the same process, so that both see the same machine state.
"""
import statistics
import time

import torch


def optional_import(name):
    """Import a module by name, or return None when it is not installed (or fails to load its ops)."""
    try:
        module = __import__(name, fromlist=["_"])
    except Exception:  # noqa: BLE001 - any failure means "peer not available"
        return None
    return module


def synchronize(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_alternating(functions, repeats, warmup=1, device="cpu"):
    """Median seconds of each callable in `functions` (dict name -> fn), run alternately.

    Returns dict name -> median seconds. Each fn is called `warmup` times first, untimed.
    """
    for fn in functions.values():
        for _ in range(warmup):
            fn()
    samples = {name: [] for name in functions}
    for _ in range(repeats):
        for name, fn in functions.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def format_ms(seconds):
    return "-" if seconds is None else f"{seconds * 1e3:.2f}"


def print_table(headers, rows):
    """Print a GitHub-markdown table (rows: lists of already-formatted cells)."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    line = "| " + " | ".join(str(h).ljust(w) for h, w in zip(headers, widths)) + " |"
    print(line)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |")
