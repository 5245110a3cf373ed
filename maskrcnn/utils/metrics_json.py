"""OUTPUT_DIR/metrics.json: one JSON object per line, written by the trainer on the main process.

Every line has an integer "iteration" and float values. Three kinds of lines:

- training (every SOLVER.LOG_PERIOD iterations): "lr", "loss", one entry per loss term
  ("loss_classifier", ...), "time", "data_time" (seconds per iteration, window medians),
  "eta_seconds", "max_mem_mb";
- evaluation (every SOLVER.TEST_PERIOD iterations): "<dataset>/<iou_type>/<metric>", e.g.
  "shapes_val/bbox/AP", "shapes_val/segm/AP50";
- validation loss: "val/loss" and "val/<loss term>".

A resumed run keeps the lines up to the iteration it resumes from and appends after them, so the
file never holds two lines of one kind for one iteration.
"""
import json
import math
import os

from .checkpoint import atomic_write

__all__ = ["MetricsWriter", "read_metrics", "flatten_results", "replace_record"]


def _parse_lines(lines):
    records = []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except ValueError:  # a line cut short by a kill during the write
            continue
        if isinstance(record, dict) and isinstance(record.get("iteration"), int):
            records.append(record)
    return records


def read_metrics(path):
    """The records of a metrics.json file (list of dicts, file order); unreadable lines skipped."""
    with open(path) as f:
        return _parse_lines(f)


def flatten_results(results):
    """{dataset: {iou_type: {metric: value}}} -> {"dataset/iou_type/metric": float} (NaN kept)."""
    flat = {}
    for dataset, per_type in results.items():
        for iou_type, metrics in per_type.items():
            for metric, value in metrics.items():
                flat[f"{dataset}/{iou_type}/{metric}"] = float(value)
    return flat


def _encode(iteration, values):
    record = {"iteration": int(iteration)}
    for key, value in values.items():
        value = float(value)
        record[key] = value if math.isfinite(value) else None
    return json.dumps(record) + "\n"


def replace_record(path, iteration, values):
    """Append {"iteration": iteration, **values} to `path`, first removing any line of the same
    iteration with the same keys (e.g. the final evaluation of a run started again after it
    finished)."""
    keys = set(values) | {"iteration"}
    kept = read_metrics(path) if os.path.exists(path) else []
    kept = [r for r in kept if not (r["iteration"] == iteration and set(r) == keys)]
    text = "".join(json.dumps(r) + "\n" for r in kept) + _encode(iteration, values)
    atomic_write(path, lambda f: f.write(text), binary=False)


class MetricsWriter(object):
    """Appends records to `path`, one JSON line each, flushed at once (a crash loses nothing
    already written).

    resume_iteration: when the file exists, lines with a larger iteration (written after the
        checkpoint being resumed from) and unparsable lines are removed first; 0 starts afresh.
    """

    def __init__(self, path, resume_iteration=0):
        self.path = path
        if os.path.exists(path):
            kept = [r for r in read_metrics(path) if r["iteration"] <= resume_iteration]
            text = "".join(json.dumps(r) + "\n" for r in kept)
            atomic_write(path, lambda f: f.write(text), binary=False)
        self._file = open(path, "a")

    def write(self, iteration, values):
        """Write {"iteration": iteration, **values}; values are converted to float (NaN and inf are
        written as JSON null, so every line stays standard JSON)."""
        self._file.write(_encode(iteration, values))
        self._file.flush()

    def close(self):
        if not self._file.closed:
            self._file.close()
