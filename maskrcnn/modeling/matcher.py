"""Assigns each prediction (anchor / proposal) to at most one ground-truth box by IoU."""
import torch

__all__ = ["Matcher"]


class Matcher(object):
    """Matches predictions to ground-truth boxes.

    Each prediction gets the index of the ground truth it overlaps most, if that overlap is
    >= ``high_threshold``; otherwise ``BELOW_LOW_THRESHOLD`` (-1) when the overlap is below
    ``low_threshold`` and ``BETWEEN_THRESHOLDS`` (-2) in between.

    With ``allow_low_quality_matches`` every ground truth also keeps the prediction(s) that
    overlap it most (all of them in case of ties), even below ``high_threshold``, so no ground
    truth is left without a match (Faster R-CNN's RPN rule). As in maskrcnn-benchmark, a ground
    truth whose best overlap is 0 then claims every prediction with overlap 0 (that matches it).

    Empty inputs. maskrcnn-benchmark raised on an empty match matrix, which made images without
    ground truth impossible to train on. Here, by default (``allow_empty_gt=True``):

    * no ground truth (matrix [0, M]): all M predictions are BELOW_LOW_THRESHOLD (background);
    * no predictions (matrix [G, 0]): an empty result.

    ``allow_empty_gt=False`` restores maskrcnn-benchmark's ValueError for both cases.
    """

    BELOW_LOW_THRESHOLD = -1
    BETWEEN_THRESHOLDS = -2

    def __init__(self, high_threshold, low_threshold, allow_low_quality_matches=False, allow_empty_gt=True):
        if low_threshold > high_threshold:
            raise ValueError(
                f"Matcher: low_threshold ({low_threshold}) must be <= high_threshold ({high_threshold})"
            )
        self.high_threshold = high_threshold
        self.low_threshold = low_threshold
        self.allow_low_quality_matches = allow_low_quality_matches
        self.allow_empty_gt = allow_empty_gt

    def __call__(self, match_quality_matrix):
        """
        Arguments:
            match_quality_matrix: Tensor[G, M], the quality (IoU) of each of G ground-truth boxes
                with each of M predictions.
        Returns:
            Tensor[M] (int64): for each prediction the index in [0, G) of its ground truth, or
            BELOW_LOW_THRESHOLD / BETWEEN_THRESHOLDS.
        """
        if match_quality_matrix.dim() != 2:
            raise ValueError(
                f"Matcher: match_quality_matrix must be 2-D [G, M], got {list(match_quality_matrix.shape)}"
            )
        num_gt, num_predictions = match_quality_matrix.shape
        if match_quality_matrix.numel() == 0:
            if not self.allow_empty_gt:
                if num_gt == 0:
                    raise ValueError("No ground-truth boxes available for one of the images during training")
                raise ValueError("No proposal boxes available for one of the images during training")
            return torch.full(
                (num_predictions,), self.BELOW_LOW_THRESHOLD, dtype=torch.int64, device=match_quality_matrix.device
            )

        matched_vals, matches = match_quality_matrix.max(dim=0)
        best_matches = matches.clone() if self.allow_low_quality_matches else None

        matches = torch.where(
            matched_vals < self.low_threshold,
            torch.full_like(matches, self.BELOW_LOW_THRESHOLD),
            torch.where(matched_vals < self.high_threshold, torch.full_like(matches, self.BETWEEN_THRESHOLDS), matches),
        )
        if self.allow_low_quality_matches:
            self.set_low_quality_matches_(matches, best_matches, match_quality_matrix)
        return matches

    def set_low_quality_matches_(self, matches, all_matches, match_quality_matrix):
        """Give back to every ground truth the prediction(s) it overlaps most (in place).

        matches: Tensor[M] after thresholding; all_matches: Tensor[M], the argmax before it.
        A prediction that is the best for several ground truths keeps its own argmax.
        """
        highest_quality_foreach_gt = match_quality_matrix.max(dim=1).values  # [G]
        is_best = match_quality_matrix == highest_quality_foreach_gt[:, None]  # [G, M]
        pred_inds_to_update = is_best.any(dim=0)  # [M]
        matches[pred_inds_to_update] = all_matches[pred_inds_to_update]
