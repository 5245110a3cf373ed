"""Turns an epoch-based batch sampler into a fixed number of iterations, resumable exactly."""
from torch.utils.data.sampler import BatchSampler


class IterationBasedBatchSampler(BatchSampler):
    """Yields batches from `batch_sampler` pass after pass until `num_iterations` in total.

    Pass `e` (0, 1, ...) calls `batch_sampler.sampler.set_epoch(e)` when the sampler has it, so
    each pass has its own order, fixed by the pass number. With `start_iter=k` the batches
    yielded are exactly batches k, k+1, ... of an uninterrupted run: the passes before are
    replayed (indices only, no data is loaded) to find where iteration k falls.

    `len()` is `num_iterations` (the trainer reads the total from it), as in maskrcnn-benchmark.
    """

    def __init__(self, batch_sampler, num_iterations, start_iter=0):
        if num_iterations < 0 or start_iter < 0:
            raise ValueError(
                "IterationBasedBatchSampler: num_iterations and start_iter must be >= 0, got %r, %r"
                % (num_iterations, start_iter)
            )
        self.batch_sampler = batch_sampler
        self.num_iterations = num_iterations
        self.start_iter = start_iter

    def _set_epoch(self, epoch):
        sampler = getattr(self.batch_sampler, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)

    def __iter__(self):
        iteration = 0
        epoch = 0
        while iteration < self.num_iterations:
            self._set_epoch(epoch)
            if iteration < self.start_iter:
                # Replay this pass without yielding if it ends before start_iter.
                pass_length = len(self.batch_sampler)
                if pass_length == 0:
                    raise ValueError("IterationBasedBatchSampler: the batch sampler is empty")
                if iteration + pass_length <= self.start_iter:
                    iteration += pass_length
                    epoch += 1
                    continue
            produced = False
            for batch in self.batch_sampler:
                produced = True
                if iteration >= self.num_iterations:
                    return
                if iteration >= self.start_iter:
                    yield batch
                iteration += 1
            if not produced:
                raise ValueError("IterationBasedBatchSampler: the batch sampler is empty")
            epoch += 1

    def __len__(self):
        return self.num_iterations
