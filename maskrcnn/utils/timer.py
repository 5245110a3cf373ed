"""A wall-clock stopwatch that accumulates over many tic/toc intervals (e.g. one per batch)."""
import datetime
import time


class Timer(object):
    """tic() starts an interval, toc() ends it and adds it to the total.

    Attributes: total_time (seconds over all intervals), calls (number of intervals),
    diff (the last interval), average_time (total_time / calls).
    """

    def __init__(self):
        self.reset()

    @property
    def average_time(self):
        return self.total_time / self.calls if self.calls > 0 else 0.0

    def tic(self):
        self.start_time = time.perf_counter()

    def toc(self, average=True):
        """End the interval begun by the last tic(); returns the average (or the last) interval."""
        self.add(time.perf_counter() - self.start_time)
        return self.average_time if average else self.diff

    def add(self, time_diff):
        self.diff = time_diff
        self.total_time += self.diff
        self.calls += 1

    def reset(self):
        self.total_time = 0.0
        self.calls = 0
        self.start_time = 0.0
        self.diff = 0.0

    def avg_time_str(self):
        return get_time_str(self.average_time)


def get_time_str(time_diff):
    """Seconds as H:MM:SS."""
    return str(datetime.timedelta(seconds=int(round(time_diff))))
