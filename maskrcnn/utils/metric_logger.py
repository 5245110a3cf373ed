"""Running statistics of training losses / timings for the progress log."""
from collections import defaultdict, deque

import torch


class SmoothedValue(object):
    """A series of numbers: window statistics over the last `window_size` values (`median`, `avg`)
    and statistics over all of them (`global_avg`)."""

    def __init__(self, window_size=20):
        self.deque = deque(maxlen=window_size)
        self.total = 0.0
        self.count = 0

    def update(self, value):
        self.deque.append(value)
        self.count += 1
        self.total += value

    @property
    def median(self):
        return torch.tensor(list(self.deque), dtype=torch.float64).median().item()

    @property
    def avg(self):
        return torch.tensor(list(self.deque), dtype=torch.float64).mean().item()

    @property
    def global_avg(self):
        return self.total / self.count


class MetricLogger(object):
    """Named SmoothedValues: `update(loss=..., time=...)`, access as `logger.loss` or
    `logger.meters["loss"]`, `str(logger)` gives "name: median (global_avg)" per meter."""

    def __init__(self, delimiter="\t"):
        self.meters = defaultdict(SmoothedValue)
        self.delimiter = delimiter

    def update(self, **kwargs):
        for name, value in kwargs.items():
            if isinstance(value, torch.Tensor):
                value = value.item()
            if not isinstance(value, (float, int)):
                raise TypeError(
                    f"MetricLogger.update: {name} must be a number or a 1-element tensor, "
                    f"got {type(value).__name__}"
                )
            self.meters[name].update(value)

    def __getattr__(self, attr):
        meters = self.__dict__.get("meters", {})
        if attr in meters:
            return meters[attr]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{attr}'")

    def __str__(self):
        return self.delimiter.join(
            f"{name}: {meter.median:.4f} ({meter.global_avg:.4f})" for name, meter in self.meters.items()
        )
