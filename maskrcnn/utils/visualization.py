"""Drawing detections and ground truth on BGR uint8 images with OpenCV.

One place for the pictures of the demo (demo/predictor.py, demo/webcam.py) and of the tools
(tools/visualize.py): boxes, class names with scores, masks (translucent fill + outline), keypoint
skeletons, a mask-heatmap montage, a frames-per-second label and image grids. Every function
returns a new image and leaves its input untouched.
"""
import colorsys
import math

import cv2
import numpy as np
import torch

__all__ = [
    "label_color", "draw_text", "overlay_boxes", "overlay_masks", "overlay_class_names",
    "overlay_keypoints", "instance_masks", "instance_keypoints", "draw_instances",
    "create_mask_montage", "make_grid",
]

_GOLDEN_RATIO = 0.618033988749895


def label_color(label):
    """A BGR colour (tuple of 3 ints) for class ``label``: hues spread by the golden ratio, so
    neighbouring labels differ clearly; the same label always gets the same colour."""
    hue = (int(label) * _GOLDEN_RATIO + 0.12) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.8, 0.95)
    return int(blue * 255), int(green * 255), int(red * 255)


def _font_scale(image):
    """Text size that stays readable from 128-pixel images up to full HD frames."""
    return float(np.clip(min(image.shape[:2]) / 700.0, 0.3, 0.9))


def _as_numpy(values):
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def draw_text(image, text, origin, color=(255, 255, 255), background=(0, 0, 0), scale=None):
    """Writes ``text`` with its top-left corner at ``origin`` (x, y) on a filled ``background``
    box (kept inside the image), in place; returns the image."""
    scale = _font_scale(image) if scale is None else scale
    thickness = 1 if scale < 0.7 else 2
    (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    x = int(np.clip(origin[0], 0, max(image.shape[1] - width - 2, 0)))
    y = int(np.clip(origin[1], 0, max(image.shape[0] - height - baseline - 2, 0)))
    cv2.rectangle(image, (x, y), (x + width + 2, y + height + baseline + 2), background, -1)
    cv2.putText(image, text, (x + 1, y + height + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, color, thickness,
                cv2.LINE_AA)
    return image


def overlay_boxes(image, boxes, colors, thickness=None):
    """boxes: [N, 4] (x1, y1, x2, y2); colors: N BGR tuples."""
    result = image.copy()
    thickness = thickness or max(1, int(round(min(image.shape[:2]) / 300)))
    for box, color in zip(_as_numpy(boxes).reshape(-1, 4), colors):
        x1, y1, x2, y2 = (int(round(float(v))) for v in box)
        cv2.rectangle(result, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
    return result


def overlay_masks(image, masks, colors, alpha=0.45, outline=True):
    """Translucent fills (weight ``alpha``) and outlines of binary masks [N, H, W] (bool / 0-1)."""
    result = image.copy()
    masks = _as_numpy(masks).astype(bool)
    if masks.size == 0:
        return result
    for mask, color in zip(masks, colors):
        color_array = np.array(color, dtype=np.float32)
        result[mask] = (result[mask].astype(np.float32) * (1 - alpha) + color_array * alpha).astype(np.uint8)
        if outline:
            contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(result, contours, -1, color, 1, cv2.LINE_AA)
    return result


def overlay_class_names(image, boxes, texts, colors):
    """``texts[i]`` above the top-left corner of box i (inside it at the top edge)."""
    result = image.copy()
    scale = _font_scale(image)
    text_height = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][1] + 6
    for box, text, color in zip(_as_numpy(boxes).reshape(-1, 4), texts, colors):
        x1, y1 = float(box[0]), float(box[1])
        top = y1 - text_height if y1 >= text_height else y1 + 1
        draw_text(result, text, (x1, top), color=(255, 255, 255), background=tuple(int(c * 0.6) for c in color),
                  scale=scale)
    return result


def overlay_keypoints(image, points, visible, connections, colors=None):
    """Keypoint skeletons.

    Arguments:
        points: [N, K, 2] (x, y); visible: [N, K] bool, which keypoints to draw.
        connections: [i, j] index pairs, drawn where both ends are visible.
        colors: N BGR tuples for the points (default: a colour per keypoint index).
    """
    result = image.copy()
    points, visible = _as_numpy(points), _as_numpy(visible).astype(bool)
    num_keypoints = points.shape[1] if points.ndim == 3 else 0
    radius = max(2, int(round(min(image.shape[:2]) / 150)))
    edge_colors = [label_color(e + 7) for e in range(len(connections))]
    for n in range(points.shape[0]):
        for (i, j), color in zip(connections, edge_colors):
            if i < num_keypoints and j < num_keypoints and visible[n, i] and visible[n, j]:
                start = tuple(int(round(float(v))) for v in points[n, i])
                end = tuple(int(round(float(v))) for v in points[n, j])
                cv2.line(result, start, end, color, max(1, radius // 2), cv2.LINE_AA)
        for k in range(num_keypoints):
            if visible[n, k]:
                center = tuple(int(round(float(v))) for v in points[n, k])
                color = colors[n] if colors is not None else label_color(k + 3)
                cv2.circle(result, center, radius, color, -1, cv2.LINE_AA)
                cv2.circle(result, center, radius, (0, 0, 0), 1, cv2.LINE_AA)
    return result


def instance_masks(instances, height, width):
    """Masks of a BoxList as bool numpy [N, H, W], or None when it has none.

    Takes the predicted field "mask" (image-sized Tensor[N, 1, H, W], 0/1 or probabilities as
    uint8 0..255 / float 0..1) or the ground-truth field "masks" (SegmentationMask).
    """
    if instances.has_field("mask"):
        masks = instances.get_field("mask")
        if masks.shape[-2:] != (height, width):
            raise ValueError(
                "instance_masks: field 'mask' must be pasted into the image ([N, 1, %d, %d]), got %s"
                % (height, width, list(masks.shape))
            )
        masks = masks.reshape(len(instances), height, width)
        if masks.dtype == torch.uint8:  # 0 / 1, or probabilities scaled to 0..255
            return _as_numpy(masks > (127 if masks.numel() and masks.max() > 1 else 0))
        return _as_numpy(masks >= 0.5)
    if instances.has_field("masks"):
        masks = instances.get_field("masks")
        if len(masks) == 0:
            return np.zeros((0, height, width), dtype=bool)
        if tuple(masks.size) != (width, height):
            masks = masks.resize((width, height))
        return _as_numpy(masks.get_mask_tensor()).reshape(len(masks), height, width).astype(bool)
    return None


def instance_keypoints(instances, threshold=2.0):
    """(points [N, K, 2], visible [N, K] bool) of a BoxList's field "keypoints", or None.

    Predicted keypoints carry scores (the Keypoints field "logits"): a keypoint is drawn when its
    score exceeds ``threshold``. Ground truth has none: visibility > 0 decides.
    """
    if not instances.has_field("keypoints"):
        return None
    keypoints = instances.get_field("keypoints")
    data = _as_numpy(keypoints.keypoints).reshape(len(instances), -1, 3)
    if keypoints.has_field("logits"):
        visible = _as_numpy(keypoints.get_field("logits")) > threshold
    else:
        visible = data[..., 2] > 0
    return data[..., :2], visible


def _keypoint_connections(instances, metadata):
    """The skeleton of the dataset when its keypoint count matches, else the Keypoints class's."""
    keypoints = instances.get_field("keypoints")
    num_keypoints = keypoints.keypoints.shape[1] if keypoints.keypoints.dim() == 3 else 0
    if metadata is not None and len(metadata.keypoint_names) == num_keypoints and metadata.keypoint_connections:
        return [tuple(c) for c in metadata.keypoint_connections]
    return [tuple(c) for c in getattr(keypoints, "CONNECTIONS", [])]


def draw_instances(image, instances, metadata=None, mask_alpha=0.45, keypoint_threshold=2.0, show_boxes=True):
    """Everything a BoxList holds, drawn on a copy of ``image`` (BGR uint8 [H, W, 3] of the
    BoxList's size): masks (fill + outline), boxes, keypoint skeletons, then "name score" labels.

    Arguments:
        instances: BoxList with optional fields "labels", "scores", "mask" / "masks", "keypoints".
        metadata: DatasetMetadata (maskrcnn.data.datasets.class_names) for class names, the
            keypoint skeleton and which classes carry keypoints; None: labels as numbers.
    """
    height, width = image.shape[:2]
    if tuple(instances.size) != (width, height):
        instances = instances.resize((width, height))
    boxes = instances.convert("xyxy").bbox
    labels = _as_numpy(instances.get_field("labels")).astype(int) if instances.has_field("labels") \
        else np.ones(len(instances), dtype=int)
    colors = [label_color(label) for label in labels]
    result = image.copy()
    masks = instance_masks(instances, height, width)
    if masks is not None:
        result = overlay_masks(result, masks, colors, alpha=mask_alpha)
    if show_boxes:
        result = overlay_boxes(result, boxes, colors)
    keypoints = instance_keypoints(instances, keypoint_threshold)
    if keypoints is not None:
        points, visible = keypoints
        if metadata is not None and metadata.keypoint_labels:
            visible = visible & np.isin(labels, metadata.keypoint_labels)[:, None]
        result = overlay_keypoints(result, points, visible, _keypoint_connections(instances, metadata))
    names = [metadata.class_name(label) if metadata is not None else str(label) for label in labels]
    if instances.has_field("scores"):
        scores = _as_numpy(instances.get_field("scores"))
        names = ["%s %.2f" % (name, score) for name, score in zip(names, scores)]
    return overlay_class_names(result, boxes, names, colors)


def create_mask_montage(image, masks, masks_per_dim=2):
    """The first ``masks_per_dim`` ** 2 masks as a ``masks_per_dim`` x ``masks_per_dim`` grid of
    heatmaps (JET colour map) with the size of ``image``.

    masks: image-sized Tensor / array [N, 1, H, W] or [N, H, W]: probabilities as uint8 0..255
    (what Masker(threshold=-1) gives), floats in [0, 1], or binary 0/1.
    """
    if masks_per_dim < 1:
        raise ValueError("create_mask_montage: masks_per_dim must be >= 1, got %r" % (masks_per_dim,))
    height, width = image.shape[:2]
    masks = _as_numpy(masks)
    masks = masks.reshape(masks.shape[0], masks.shape[-2], masks.shape[-1])[: masks_per_dim ** 2]
    if masks.dtype == np.uint8 and masks.size and masks.max() <= 1:
        masks = masks * 255
    elif masks.dtype != np.uint8:
        masks = np.clip(masks * 255.0, 0, 255)
    masks = masks.astype(np.uint8)
    tile_h, tile_w = max(height // masks_per_dim, 1), max(width // masks_per_dim, 1)
    montage = np.zeros((height, width), dtype=np.uint8)
    for index, mask in enumerate(masks):
        row, col = divmod(index, masks_per_dim)
        tile = cv2.resize(mask, (tile_w, tile_h), interpolation=cv2.INTER_LINEAR)
        montage[row * tile_h:(row + 1) * tile_h, col * tile_w:(col + 1) * tile_w] = tile
    return cv2.applyColorMap(montage, cv2.COLORMAP_JET)


def make_grid(images, columns=None, padding=4, background=(255, 255, 255), titles=None):
    """Tiles BGR images (sizes may differ) into one: ``columns`` per row (default: about square),
    cells as large as the largest image, ``padding`` pixels between them, optional titles drawn in
    each cell's top-left corner."""
    if not images:
        raise ValueError("make_grid: no images")
    columns = columns or int(math.ceil(math.sqrt(len(images))))
    rows = int(math.ceil(len(images) / columns))
    cell_h = max(image.shape[0] for image in images)
    cell_w = max(image.shape[1] for image in images)
    grid = np.empty((rows * cell_h + (rows + 1) * padding, columns * cell_w + (columns + 1) * padding, 3), np.uint8)
    grid[:] = background
    for index, image in enumerate(images):
        row, col = divmod(index, columns)
        top, left = padding + row * (cell_h + padding), padding + col * (cell_w + padding)
        cell = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        if titles is not None and titles[index]:
            cell = draw_text(cell.copy(), str(titles[index]), (0, 0))
        grid[top:top + cell.shape[0], left:left + cell.shape[1]] = cell
    return grid
