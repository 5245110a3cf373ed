"""Concatenation of datasets that keeps get_img_info (for aspect grouping and evaluation)."""
import bisect

from torch.utils.data.dataset import ConcatDataset as _ConcatDataset


class ConcatDataset(_ConcatDataset):
    """torch ConcatDataset + `get_idxs(idx)` -> (dataset index, sample index) and `get_img_info`."""

    def get_idxs(self, idx):
        if idx < 0:
            idx += len(self)
        dataset_idx = bisect.bisect_right(self.cumulative_sizes, idx)
        sample_idx = idx if dataset_idx == 0 else idx - self.cumulative_sizes[dataset_idx - 1]
        return dataset_idx, sample_idx

    def get_img_info(self, idx):
        dataset_idx, sample_idx = self.get_idxs(idx)
        return self.datasets[dataset_idx].get_img_info(sample_idx)
