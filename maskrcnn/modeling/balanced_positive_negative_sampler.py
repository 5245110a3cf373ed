"""Samples a fixed-size, class-balanced minibatch of anchors / proposals per image."""
import torch

__all__ = ["BalancedPositiveNegativeSampler"]


class BalancedPositiveNegativeSampler(object):
    """Draws at most ``batch_size_per_image`` elements per image, of which at most
    ``positive_fraction`` are positive; the rest of the budget goes to negatives.

    Arguments:
        batch_size_per_image (int): sampled elements per image.
        positive_fraction (float): upper bound of the positive share, in [0, 1].
    """

    def __init__(self, batch_size_per_image, positive_fraction):
        if batch_size_per_image < 0:
            raise ValueError(f"batch_size_per_image must be >= 0, got {batch_size_per_image}")
        if not 0.0 <= positive_fraction <= 1.0:
            raise ValueError(f"positive_fraction must be in [0, 1], got {positive_fraction}")
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction

    def __call__(self, matched_idxs):
        """
        Arguments:
            matched_idxs: list of Tensor[M_i], one per image: labels with -1 = ignore,
                0 = negative (background), >= 1 = positive.
        Returns:
            (pos_idx, neg_idx): two lists of Tensor[M_i] (bool), one per image, marking the
            sampled positives and negatives.
        """
        pos_idx = []
        neg_idx = []
        for labels in matched_idxs:
            positive = torch.nonzero(labels >= 1).squeeze(1)
            negative = torch.nonzero(labels == 0).squeeze(1)

            num_pos = min(positive.numel(), int(self.batch_size_per_image * self.positive_fraction))
            num_neg = min(negative.numel(), self.batch_size_per_image - num_pos)

            chosen_pos = positive[torch.randperm(positive.numel(), device=positive.device)[:num_pos]]
            chosen_neg = negative[torch.randperm(negative.numel(), device=negative.device)[:num_neg]]

            pos_mask = torch.zeros_like(labels, dtype=torch.bool)
            neg_mask = torch.zeros_like(labels, dtype=torch.bool)
            pos_mask[chosen_pos] = True
            neg_mask[chosen_neg] = True
            pos_idx.append(pos_mask)
            neg_idx.append(neg_mask)
        return pos_idx, neg_idx
