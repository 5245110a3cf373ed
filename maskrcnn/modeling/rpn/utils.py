"""Reshaping of per-level head outputs into one row per anchor."""
from maskrcnn.modeling.utils import cat

__all__ = ["permute_and_flatten", "concat_box_prediction_layers"]


def permute_and_flatten(layer, N, A, C, H, W):
    """Tensor[N, A * C, H, W] -> Tensor[N, H * W * A, C], rows ordered as the anchors of
    AnchorGenerator.grid_anchors (location-major, then anchor)."""
    layer = layer.view(N, A, C, H, W)
    layer = layer.permute(0, 3, 4, 1, 2)
    return layer.reshape(N, H * W * A, C)


def concat_box_prediction_layers(box_cls, box_regression):
    """Flatten and concatenate the levels of a head's outputs.

    Arguments:
        box_cls: list (levels) of Tensor[N, A * C, H_l, W_l].
        box_regression: list (levels) of Tensor[N, A * 4, H_l, W_l].
    Returns:
        (Tensor[N * sum_l(H_l * W_l * A), C], Tensor[N * sum_l(H_l * W_l * A), 4]): rows ordered by
        image, then level, then location, then anchor, matching the per-image concatenation of
        the anchors of all levels.
    """
    if len(box_cls) != len(box_regression) or len(box_cls) == 0:
        raise ValueError(
            f"concat_box_prediction_layers: need one box_regression per box_cls level (at least one), "
            f"got {len(box_cls)} and {len(box_regression)}"
        )
    box_cls_flattened = []
    box_regression_flattened = []
    C = None
    for box_cls_per_level, box_regression_per_level in zip(box_cls, box_regression):
        N, AxC, H, W = box_cls_per_level.shape
        A = box_regression_per_level.shape[1] // 4
        C = AxC // A
        box_cls_flattened.append(permute_and_flatten(box_cls_per_level, N, A, C, H, W))
        box_regression_flattened.append(permute_and_flatten(box_regression_per_level, N, A, 4, H, W))
    box_cls = cat(box_cls_flattened, dim=1).reshape(-1, C)
    box_regression = cat(box_regression_flattened, dim=1).reshape(-1, 4)
    return box_cls, box_regression
