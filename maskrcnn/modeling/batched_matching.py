"""Matching the predictions of all images of a batch to their ground truth at once.

The training losses (RPN / RetinaNet, box, mask and keypoint heads) match each image's
predictions (anchors, proposals) to its ground truth. Here the boxes of the B images are padded to
[B, N, 4], one ``pairwise_iou`` and one ``Matcher.match_batch`` call match them all, and the result
is kept concatenated over the images (image 0's predictions first), the layout the losses work in:

    match = match_boxlists(matcher, targets, proposals)   # BatchedMatch
    match.matched_idxs                                     # Tensor[sum M_i], the Matcher's codes
    labels = match.gather_field(targets, "labels", fill=0) # Tensor[sum M_i], the matched gt's label
    match.split(labels)                                    # per image, where an API needs it

Image by image the matched indices are exactly those of
``matcher(boxlist_iou(targets[i], predictions[i]))``: the IoU values are the same elementwise
operations, and padding never wins nor is claimed (see ``Matcher.match_batch``).
"""
import torch

from maskrcnn.structures.boxlist_ops import pairwise_iou

__all__ = ["pad_boxes", "BatchedMatch", "match_boxlists"]


def pad_boxes(boxes):
    """Stack boxes of different counts, padded with zeros.

    Arguments:
        boxes: list of B Tensor[N_i, 4] (same device; the result has their promoted dtype).
    Returns:
        (Tensor[B, N, 4], Tensor[B, N] bool): the padded boxes (N = max N_i, rows >= N_i zero)
        and which rows are real.
    """
    if len(boxes) == 0:
        raise ValueError("pad_boxes: no boxes to pad")
    counts = [int(b.shape[0]) for b in boxes]
    num = max(counts)
    dtype = boxes[0].dtype
    for b in boxes[1:]:
        dtype = torch.promote_types(dtype, b.dtype)
    device = boxes[0].device
    if all(count == num for count in counts):
        padded = torch.stack([b.to(dtype) for b in boxes])
    else:
        padded = torch.zeros((len(boxes), num, 4), dtype=dtype, device=device)
        for row, (b, count) in enumerate(zip(boxes, counts)):
            padded[row, :count] = b
    valid = torch.arange(num, device=device) < torch.tensor(counts, device=device)[:, None]
    return padded, valid


class BatchedMatch(object):
    """The Matcher's output for B images, concatenated over the images.

    Attributes:
        matched_idxs: Tensor[P] int64 (P = sum M_i): per prediction, the index in [0, G_i) of
            its ground truth within its image, or BELOW_LOW_THRESHOLD / BETWEEN_THRESHOLDS.
        counts: list of B ints, M_i (predictions per image).
        gt_counts: list of B ints, G_i (ground truths per image).
        image_index: Tensor[P] int64, the image of each prediction.
        starts: Tensor[B] int64, the row of each image's first prediction in the concatenation.
        has_gt: Tensor[P] bool, whether the prediction's image has any ground truth.
        gt_index: Tensor[P] int64, the row of the prediction's ground truth (matched_idxs clamped
            at 0, so unmatched predictions point at their image's ground truth 0) in the
            concatenation of all images' ground truth; 0 where the image has none.
    """

    def __init__(self, matched_idxs, counts, gt_counts):
        self.matched_idxs = matched_idxs
        self.counts = list(counts)
        self.gt_counts = list(gt_counts)
        device = matched_idxs.device
        counts_tensor = torch.tensor(self.counts, device=device)
        self.image_index = torch.repeat_interleave(torch.arange(len(self.counts), device=device), counts_tensor)
        self.starts = torch.cumsum(counts_tensor, 0) - counts_tensor  # [B]
        gt_counts_tensor = torch.tensor(self.gt_counts, device=device)
        gt_offsets = torch.cumsum(gt_counts_tensor, 0) - gt_counts_tensor  # [B]
        self.all_have_gt = all(count > 0 for count in self.gt_counts)
        self.has_gt = torch.repeat_interleave(gt_counts_tensor > 0, counts_tensor)
        gt_index = matched_idxs.clamp(min=0) + torch.repeat_interleave(gt_offsets, counts_tensor)
        self.gt_index = gt_index if self.all_have_gt else torch.where(self.has_gt, gt_index, 0)

    def split(self, tensor):
        """Tensor[P, ...] -> tuple of B views Tensor[M_i, ...] (one per image)."""
        return torch.split(tensor, self.counts, dim=0)

    def split_rows(self, rows):
        """Rows of the concatenation, per image.

        Arguments:
            rows: Tensor[K] int64, rows in [0, P), in increasing order.
        Returns:
            (tuple of B Tensor[K_i] int64, list of B ints K_i): each image's rows counted from its
            own first prediction, and how many there are.
        """
        image = self.image_index[rows]
        counts = torch.bincount(image, minlength=len(self.counts)).tolist()
        return torch.split(rows - self.starts[image], counts), counts

    def per_image(self):
        """The matched indices of each image: tuple of B Tensor[M_i] int64 (views)."""
        return self.split(self.matched_idxs)

    def gather(self, values, fill):
        """Per prediction, the row of its (clamped) matched ground truth.

        Arguments:
            values: list of B Tensor[G_i, ...] (a row per ground truth); entries of images
                without ground truth may be None.
            fill: scalar or Tensor broadcastable to [P, ...]: the value for the predictions of
                images without ground truth.
        Returns:
            Tensor[P, ...]: ``values[i][matched_idxs.clamp(min=0)]`` image by image, ``fill`` for
            images without ground truth.
        """
        present = [value for value, count in zip(values, self.gt_counts) if count > 0]
        if not present:
            reference = next((value for value in values if value is not None), None)
            if reference is None:
                raise ValueError("BatchedMatch.gather: no image has ground truth and no value gives a shape")
            present = [reference.new_zeros((1,) + tuple(reference.shape[1:]))]  # a dummy row, never kept
        table = torch.cat(present, dim=0) if len(present) > 1 else present[0]
        gathered = table[self.gt_index]
        if self.all_have_gt:
            return gathered
        has_gt = self.has_gt.view((-1,) + (1,) * (gathered.dim() - 1))
        return torch.where(has_gt, gathered, fill)

    def gather_field(self, targets, name, fill, dtype=None):
        """``gather`` of the tensor field ``name`` of the targets (BoxLists), read only from images
        with ground truth (an empty target may lack it); ``dtype`` converts it first."""
        values = []
        for target, count in zip(targets, self.gt_counts):
            if count == 0:
                values.append(None)
                continue
            value = target.get_field(name)
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"batched matching: the field {name!r} is a {type(value).__name__}, not a tensor")
            values.append(value.to(device=self.matched_idxs.device, dtype=dtype or value.dtype))
        if all(value is None for value in values):
            # no image has ground truth: the field of an empty target, if any, gives the shape
            for target in targets:
                if target.has_field(name) and isinstance(target.get_field(name), torch.Tensor):
                    value = target.get_field(name)
                    values[0] = value.to(device=self.matched_idxs.device, dtype=dtype or value.dtype)
                    break
            else:
                return torch.full((len(self.matched_idxs),), fill, dtype=dtype, device=self.matched_idxs.device)
        return self.gather(values, fill)


def match_boxlists(matcher, targets, predictions):
    """Match every image's predictions to its ground truth with one IoU and one Matcher call.

    Arguments:
        matcher (Matcher): thresholds and rules.
        targets: list of B BoxList, the ground truth (G_i boxes, possibly 0).
        predictions: list of B BoxList, the anchors / proposals (M_i boxes), each of its
            target's image size and box convention; all images in one convention.
    Returns:
        BatchedMatch: ``per_image()`` gives, for each image, exactly
        ``matcher(boxlist_iou(targets[i], predictions[i]))``.
    """
    if len(targets) != len(predictions):
        raise ValueError(f"match_boxlists: {len(targets)} targets for {len(predictions)} images")
    if len(targets) == 0:
        raise ValueError("match_boxlists: no images")
    legacy = predictions[0].legacy_plus_one
    for image, (target, prediction) in enumerate(zip(targets, predictions)):
        if target.size != prediction.size:
            raise RuntimeError(
                f"boxlist_iou: boxlists should have the same image size, got {target.size} and {prediction.size}"
            )
        if target.legacy_plus_one != prediction.legacy_plus_one or prediction.legacy_plus_one != legacy:
            raise ValueError(
                f"match_boxlists: image {image} uses a different box convention "
                f"(legacy_plus_one={target.legacy_plus_one} / {prediction.legacy_plus_one}, image 0: {legacy})"
            )
    gt_boxes, gt_valid = pad_boxes([target.convert("xyxy").bbox for target in targets])
    pred_boxes, pred_valid = pad_boxes([prediction.convert("xyxy").bbox for prediction in predictions])
    gt_counts = [len(target) for target in targets]
    counts = [len(prediction) for prediction in predictions]
    quality = pairwise_iou(gt_boxes, pred_boxes, legacy_plus_one=legacy)  # [B, G, M]
    gt_padded = any(count != gt_valid.shape[1] for count in gt_counts)
    pred_padded = any(count != pred_valid.shape[1] for count in counts)
    matches = matcher.match_batch(
        quality, gt_valid if gt_padded else None, pred_valid if pred_padded else None, inplace=True
    )  # [B, M]
    matched_idxs = matches[pred_valid] if pred_padded else matches.reshape(-1)
    return BatchedMatch(matched_idxs, counts, gt_counts)
