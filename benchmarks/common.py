"""Shared timing and table helpers for the scripts in benchmarks/.

Timings are medians of repeated runs; when a peer implementation (torchvision) is importable the two
are run alternately in the same process, so that both see the same machine state.
"""
import ctypes
import resource
import statistics
import sys
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
    return {name: m.seconds for name, m in measure_alternating(functions, repeats, warmup, device).items()}


class Measurement(object):
    """Medians over the timed runs of one callable.

    seconds: median wall time; cpu_seconds: median CPU time of the process over a run (all its
    threads; on a machine shared with other jobs it moves less with their load than wall time
    does); peak_bytes: median peak memory of a run (see `PeakMemory`), None when not measured;
    result: what the last run returned.
    """

    def __init__(self, seconds, cpu_seconds, peak_bytes, result):
        self.seconds, self.cpu_seconds, self.peak_bytes, self.result = seconds, cpu_seconds, peak_bytes, result


def measure_alternating(functions, repeats, warmup=1, device="cpu", memory=False):
    """Run the callables of `functions` (dict name -> fn) alternately, `repeats` timed rounds after
    `warmup` untimed calls each; dict name -> Measurement. With memory=True each timed run's peak
    memory is taken too (`PeakMemory`; its reset happens outside the timed region)."""
    last = {}
    for name, fn in functions.items():
        for _ in range(warmup):
            last[name] = fn()
    seconds, cpu_seconds, peaks = ({name: [] for name in functions} for _ in range(3))
    for _ in range(repeats):
        for name, fn in functions.items():
            tracker = PeakMemory(device) if memory else None
            synchronize(device)
            start, cpu_start = time.perf_counter(), time.process_time()
            last[name] = fn()
            synchronize(device)
            seconds[name].append(time.perf_counter() - start)
            cpu_seconds[name].append(time.process_time() - cpu_start)
            if tracker is not None:
                peaks[name].append(tracker.peak_bytes())
    return {
        name: Measurement(statistics.median(seconds[name]), statistics.median(cpu_seconds[name]),
                          statistics.median(peaks[name]) if peaks[name] else None, last.get(name))
        for name in functions
    }


# ------------------------------------------------------------------------------ peak memory
def status_kib(field):
    """A field of /proc/self/status in KiB (VmRSS, VmHWM)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def reset_peak_rss():
    """Return freed heap to the OS, then reset the kernel's peak-RSS mark (VmHWM) to the current
    RSS. False where /proc/self/clear_refs is not writable (non-Linux, old kernels)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


class PeakMemory(object):
    """Peak memory of what runs between construction and `peak_bytes()`.

    CUDA: torch.cuda.max_memory_allocated() after reset_peak_memory_stats(), i.e. the whole
    allocator's peak (weights, optimizer state and activations), in bytes.
    CPU: the growth of the process's resident set over the interval: freed heap is returned to the
    OS (malloc_trim), the kernel's peak-RSS mark is reset (/proc/self/clear_refs "5"), and
    VmHWM - VmRSS(start) is reported: activations, workspaces, gradients and allocator overhead on
    top of what already lived (weights, and optimizer state after the first step). Where
    clear_refs is not writable, the ru_maxrss delta (an underestimate once an earlier peak was
    higher) is used.
    """

    def __init__(self, device="cpu"):
        self.cuda = torch.device(device).type == "cuda"
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return
        self.exact = reset_peak_rss()
        self.start_kib = status_kib("VmRSS") if self.exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def peak_bytes(self):
        if self.cuda:
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated()
        if self.exact:
            return (status_kib("VmHWM") - self.start_kib) * 1024
        return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - self.start_kib) * 1024


def parse_size(text):
    """'800x1216' -> (800, 1216) (height, width)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size must be HxW such as 800x1216, got {text!r}") from None
    return height, width


def format_ratio(ours, peer):
    return f"{ours / peer:.2f}" if ours is not None and peer else "-"


def format_mib(num_bytes):
    return "-" if num_bytes is None else f"{num_bytes / 2**20:.0f}"


def format_ms(seconds):
    return "-" if seconds is None else f"{seconds * 1e3:.2f}"


def progress(cells):
    """One finished row on stderr at once (long runs print their table only at the end)."""
    print("done: " + " | ".join(str(c) for c in cells), file=sys.stderr, flush=True)


def print_table(headers, rows):
    """Print a GitHub-markdown table (rows: lists of already-formatted cells)."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    line = "| " + " | ".join(str(h).ljust(w) for h, w in zip(headers, widths)) + " |"
    print(line)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |")
