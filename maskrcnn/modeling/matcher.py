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
        return self.match_batch(match_quality_matrix[None])[0]

    def match_batch(self, match_quality_matrix, gt_valid=None, pred_valid=None, inplace=False):
        """``__call__`` for B images at once, on matrices padded to a common size.

        Arguments:
            match_quality_matrix: Tensor[B, G, M]: image b's quality of ground truth g with
                prediction m (IoU in [0, 1]; padded entries may hold anything).
            gt_valid: Tensor[B, G] bool, the real ground-truth rows of each image (None: all).
            pred_valid: Tensor[B, M] bool, the real prediction columns (None: all).
            inplace (bool): the padded entries of match_quality_matrix may be overwritten (with
                -inf), which saves a copy of it; otherwise it is left as it is.
        Returns:
            Tensor[B, M] (int64): for each image, on its real columns, exactly what ``__call__``
            gives for its real rows and columns alone; BELOW_LOW_THRESHOLD on padded columns.
            Padded rows never win a prediction nor claim one as a low-quality match, padded
            columns are never claimed. An image without real ground truth is all
            BELOW_LOW_THRESHOLD (with ``allow_empty_gt=False``: the ValueError ``__call__``
            raises, for the first image without ground truth or predictions).
        """
        if match_quality_matrix.dim() != 3:
            raise ValueError(
                f"Matcher.match_batch: match_quality_matrix must be 3-D [B, G, M], got "
                f"{list(match_quality_matrix.shape)}"
            )
        num_images, num_gt, num_predictions = match_quality_matrix.shape
        device = match_quality_matrix.device
        for name, mask, shape in (("gt_valid", gt_valid, (num_images, num_gt)),
                                  ("pred_valid", pred_valid, (num_images, num_predictions))):
            if mask is not None and (mask.dtype != torch.bool or tuple(mask.shape) != shape):
                raise ValueError(
                    f"Matcher.match_batch: {name} must be a bool Tensor{list(shape)}, got "
                    f"{mask.dtype} {list(mask.shape)}"
                )
        if not self.allow_empty_gt:
            self._check_not_empty(num_gt, num_predictions, gt_valid, pred_valid)
        matches = torch.full((num_images, num_predictions), self.BELOW_LOW_THRESHOLD, dtype=torch.int64, device=device)
        if num_gt == 0 or num_predictions == 0:
            return matches

        # padded rows must not be any prediction's best ground truth; padded columns must not be
        # a ground truth's best prediction (only the low-quality rule looks at those): -inf there,
        # written row / column-wise (the tensors can be large: no full-size mask)
        mask_columns = pred_valid is not None and self.allow_low_quality_matches
        if gt_valid is not None or mask_columns:
            if not inplace:
                match_quality_matrix = match_quality_matrix.clone()
            if gt_valid is not None:
                image, row = torch.nonzero(~gt_valid, as_tuple=True)
                match_quality_matrix[image, row, :] = float("-inf")
            if mask_columns:
                image, column = torch.nonzero(~pred_valid, as_tuple=True)
                match_quality_matrix[image, :, column] = float("-inf")

        matched_vals, best_matches = match_quality_matrix.max(dim=1)  # [B, M]
        matches = torch.where(
            matched_vals < self.low_threshold,
            matches,
            torch.where(
                matched_vals < self.high_threshold, torch.full_like(matches, self.BETWEEN_THRESHOLDS), best_matches
            ),
        )
        if self.allow_low_quality_matches:
            self.set_low_quality_matches_(matches, best_matches, match_quality_matrix, gt_valid)
        if gt_valid is not None or pred_valid is not None:
            keep = torch.ones((1, 1), dtype=torch.bool, device=device)
            if gt_valid is not None:
                keep = keep & gt_valid.any(dim=1, keepdim=True)  # images without ground truth
            if pred_valid is not None:
                keep = keep & pred_valid
            matches = torch.where(keep, matches, torch.full_like(matches, self.BELOW_LOW_THRESHOLD))
        return matches

    def _check_not_empty(self, num_gt, num_predictions, gt_valid, pred_valid):
        """maskrcnn-benchmark's ValueError for the first image without ground truth or predictions."""
        has_gt = gt_valid.any(dim=1).tolist() if gt_valid is not None else None
        has_pred = pred_valid.any(dim=1).tolist() if pred_valid is not None else None
        num_images = len(has_gt) if has_gt is not None else len(has_pred) if has_pred is not None else 1
        for image in range(num_images):
            image_has_gt = has_gt[image] if has_gt is not None else num_gt > 0
            image_has_pred = has_pred[image] if has_pred is not None else num_predictions > 0
            if not image_has_gt:
                raise ValueError("No ground-truth boxes available for one of the images during training")
            if not image_has_pred:
                raise ValueError("No proposal boxes available for one of the images during training")

    def set_low_quality_matches_(self, matches, all_matches, match_quality_matrix, gt_valid=None):
        """Give back to every ground truth the prediction(s) it overlaps most (in place).

        matches: Tensor[..., M] after thresholding; all_matches: Tensor[..., M], the argmax before
        it; match_quality_matrix: Tensor[..., G, M]; gt_valid: optional Tensor[..., G] bool, the
        real ground-truth rows (padded rows claim nothing). A prediction that is the best for
        several ground truths keeps its own argmax.
        """
        highest_quality_foreach_gt = match_quality_matrix.max(dim=-1).values  # [..., G]
        if gt_valid is not None:
            # NaN equals nothing: padded rows have no best prediction
            highest_quality_foreach_gt = highest_quality_foreach_gt.masked_fill(~gt_valid, float("nan"))
        is_best = match_quality_matrix == highest_quality_foreach_gt[..., None]  # [..., G, M]
        pred_inds_to_update = is_best.any(dim=-2)  # [..., M]
        matches[pred_inds_to_update] = all_matches[pred_inds_to_update]
