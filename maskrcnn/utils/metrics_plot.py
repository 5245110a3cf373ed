"""Reading the trainer's ``metrics.json`` and plotting its curves into one PNG.

``metrics.json`` holds one JSON object per line, each with an ``"iteration"``:

* training lines: ``lr``, ``loss`` (the total), one entry per loss term (``loss_classifier``, ...),
  ``time``, ``data_time``, ``eta_seconds``, ``max_mem_mb``;
* evaluation lines: ``"<dataset>/<iou_type>/<metric>"`` entries, e.g. ``"shapes_val/bbox/AP"``;
* validation-loss lines: ``"val/<name>"`` entries, e.g. ``"val/loss"``.

Any kind of line may be missing. A resumed run may write an iteration twice: the later line wins.
"""
import json
import math
from collections import OrderedDict

__all__ = ["MetricsFormatError", "Metrics", "read_metrics", "plot_metrics"]

VALIDATION_PREFIX = "val/"
# training entries that are not losses (plotted apart or not at all)
_NON_LOSS_KEYS = {"iteration", "lr", "time", "data_time", "eta_seconds", "max_mem_mb"}


class MetricsFormatError(ValueError):
    """A metrics file line is not a JSON object with an integer "iteration"; the message names
    the file and the line number."""


class Metrics(object):
    """The series of one metrics file: ``train``, ``validation`` and ``evaluation`` each map a
    name to a list of (iteration, value) sorted by iteration."""

    def __init__(self):
        self.train = OrderedDict()
        self.validation = OrderedDict()
        self.evaluation = OrderedDict()

    def _add(self, table, name, iteration, value):
        table.setdefault(name, {})[iteration] = value

    def _finish(self):
        for table in (self.train, self.validation, self.evaluation):
            for name in list(table):
                table[name] = sorted(table[name].items())

    def loss_names(self):
        """Training loss series: "loss" (the total) first, then the terms in file order."""
        names = [n for n in self.train if n not in _NON_LOSS_KEYS and n.startswith("loss")]
        return sorted(names, key=lambda n: n != "loss")

    def is_empty(self):
        return not (self.train or self.validation or self.evaluation)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_metrics(path):
    """Metrics of the file ``path``. Blank lines are skipped; non-finite or non-numeric entries
    are ignored. Raises MetricsFormatError (file and line number) on a line that is not a JSON
    object with an integer "iteration", FileNotFoundError when the file is missing."""
    metrics = Metrics()
    with open(path, "r") as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line.strip())
            except json.JSONDecodeError as error:
                raise MetricsFormatError(f"{path}, line {line_number}: not valid JSON ({error})") from None
            if not isinstance(record, dict):
                raise MetricsFormatError(f"{path}, line {line_number}: expected a JSON object, got {line.strip()[:80]}")
            iteration = record.get("iteration")
            if not isinstance(iteration, int) or isinstance(iteration, bool):
                raise MetricsFormatError(
                    f"{path}, line {line_number}: needs an integer \"iteration\", got {iteration!r}"
                )
            for name, value in record.items():
                if name == "iteration" or not _is_number(value):
                    continue
                if name.startswith(VALIDATION_PREFIX):
                    metrics._add(metrics.validation, name, iteration, float(value))
                elif "/" in name:
                    metrics._add(metrics.evaluation, name, iteration, float(value))
                else:
                    metrics._add(metrics.train, name, iteration, float(value))
    metrics._finish()
    return metrics


def _xy(series):
    return [p[0] for p in series], [p[1] for p in series]


def _empty_panel(axis, message):
    axis.text(0.5, 0.5, message, ha="center", va="center", transform=axis.transAxes, color="0.4")
    axis.set_xticks([])
    axis.set_yticks([])


def _plot_losses(axis, metrics):
    names = metrics.loss_names()
    for name in names:
        iterations, values = _xy(metrics.train[name])
        axis.plot(iterations, values, label=name, linewidth=2.0 if name == "loss" else 1.0)
    for name, series in metrics.validation.items():
        if name.endswith("loss"):
            iterations, values = _xy(series)
            axis.plot(iterations, values, "o--", label=name, linewidth=1.5, markersize=3)
    if not names and not axis.lines:
        _empty_panel(axis, "no training losses in the metrics file")
        return
    positive = all(v > 0 for line in axis.lines for v in line.get_ydata())
    if positive:
        axis.set_yscale("log")
    axis.set_title("losses")
    axis.set_xlabel("iteration")
    axis.legend(fontsize="small", ncol=2)
    axis.grid(True, alpha=0.3)


def _plot_evaluation(axis, metrics):
    """AP (solid) and AP50 (dashed) of each dataset / IoU type."""
    shown = [n for n in metrics.evaluation if n.rsplit("/", 1)[-1] in ("AP", "AP50")]
    if not shown:
        _empty_panel(axis, "no evaluation (AP) lines in the metrics file")
        return
    for name in shown:
        iterations, values = _xy(metrics.evaluation[name])
        style = "o-" if name.endswith("/AP") else "s--"
        axis.plot(iterations, values, style, label=name, markersize=4)
    axis.set_title("COCO AP")
    axis.set_xlabel("iteration")
    axis.set_ylim(0, max(1.0, max(v for line in axis.lines for v in line.get_ydata())))
    axis.legend(fontsize="small")
    axis.grid(True, alpha=0.3)


def _plot_learning_rate(axis, metrics):
    if "lr" not in metrics.train:
        _empty_panel(axis, "no learning rate in the metrics file")
        return
    iterations, values = _xy(metrics.train["lr"])
    axis.plot(iterations, values, color="tab:purple")
    axis.set_title("learning rate")
    axis.set_xlabel("iteration")
    axis.grid(True, alpha=0.3)


def plot_metrics(metrics_path, output_path, title=None):
    """Plot the loss curves (total, each term, validation losses), the AP curves and the
    learning rate of ``metrics_path`` into the PNG ``output_path``. Returns the Metrics read.
    Raises ValueError when the file holds no metrics at all."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    metrics = read_metrics(metrics_path)
    if metrics.is_empty():
        raise ValueError(f"{metrics_path}: no metrics to plot (the file has no numeric entries)")
    figure, axes = plt.subplots(1, 3, figsize=(18, 5), gridspec_kw={"width_ratios": [3, 3, 2]})
    _plot_losses(axes[0], metrics)
    _plot_evaluation(axes[1], metrics)
    _plot_learning_rate(axes[2], metrics)
    figure.suptitle(title or str(metrics_path))
    figure.tight_layout()
    figure.savefig(output_path, dpi=100)
    plt.close(figure)
    return metrics
