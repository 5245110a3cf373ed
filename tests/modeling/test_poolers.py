import math

import pytest
import torch

from maskrcnn.config import cfg as default_cfg
from maskrcnn.layers import ROIAlign
from maskrcnn.modeling.poolers import LevelMapper, Pooler, make_pooler
from maskrcnn.structures.bounding_box import BoxList


def _boxlist(boxes, size=(256, 256), dtype=torch.float32):
    return BoxList(torch.tensor(boxes, dtype=dtype).reshape(-1, 4), size, mode="xyxy")


# ------------------------------------------------------------------------------ LevelMapper

def test_level_mapper_hand_computed_legacy():
    # levels P2..P5; sqrt(area) with +1 widths: 224 -> level 4, 112 -> 3, 448 -> 5
    mapper = LevelMapper(2, 5)
    boxes = _boxlist([
        [0, 0, 223, 223],     # side 224 -> floor(4 + log2(1))      = 4 -> index 2
        [10, 10, 121, 121],   # side 112 -> floor(4 + log2(0.5+eps)) = 3 -> index 1
        [0, 0, 447, 447],     # side 448 -> 5                              -> index 3
        [0, 0, 9, 9],         # side 10 -> floor(4 - 4.49) = -1, clamped to 2 -> index 0
        [0, 0, 1999, 1999],   # side 2000 -> 7, clamped to 5              -> index 3
        [0, 0, 55, 111],      # sqrt(56 * 112) = 79.2 -> floor(2.50) = 2  -> index 0
        [0, 0, 111, 223],     # sqrt(112 * 224) = 158.4 -> floor(3.50) = 3 -> index 1
    ])
    levels = mapper([boxes])
    assert levels.dtype == torch.int64
    assert levels.tolist() == [2, 1, 3, 0, 3, 0, 1]


def test_level_mapper_box_convention_switch():
    # a 223-wide box (x2 - x1) is 224 pixels in the legacy convention but 223 in the modern one
    boxes = _boxlist([[0, 0, 223, 223], [0, 0, 224, 224]])
    assert LevelMapper(2, 5, legacy_plus_one=True)([boxes]).tolist() == [2, 2]
    assert LevelMapper(2, 5, legacy_plus_one=False)([boxes]).tolist() == [1, 2]


def test_level_mapper_eps_placement_follows_the_convention():
    # side 112 * (1 - 1.4e-6): log2(side / 224) = -1 - 2.02e-6. torchvision adds eps (1e-6) to the
    # log (level 2); maskrcnn-benchmark adds it to side / 224 inside the log (level 3).
    side = 112 * (1 - 1.4e-6)
    modern = torch.tensor([[0.0, 0.0, side, side]], dtype=torch.float64)
    legacy = modern - torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    assert LevelMapper(2, 5, legacy_plus_one=False).levels_of_boxes(modern).tolist() == [0]
    assert LevelMapper(2, 5, legacy_plus_one=True).levels_of_boxes(legacy).tolist() == [1]


def test_level_mapper_canonical_arguments_and_several_images():
    mapper = LevelMapper(3, 6, canonical_scale=100, canonical_level=5)
    first = _boxlist([[0, 0, 99, 99]])                   # side 100 -> level 5 -> index 2
    second = _boxlist([[0, 0, 49, 49], [0, 0, 399, 399]])  # 50 -> 4 -> 1; 400 -> 7 -> 6 -> 3
    assert mapper([first, second]).tolist() == [2, 1, 3]


def test_level_mapper_matches_formula_on_random_boxes():
    torch.manual_seed(0)
    xy = torch.rand(200, 2) * 300
    wh = torch.rand(200, 2) * 600
    boxes = torch.cat([xy, xy + wh], dim=1)
    levels = LevelMapper(2, 5).levels_of_boxes(boxes)
    for box, level in zip(boxes.tolist(), levels.tolist()):
        side = math.sqrt((box[2] - box[0] + 1) * (box[3] - box[1] + 1))
        expected = min(max(math.floor(4 + math.log2(side / 224 + 1e-6)), 2), 5) - 2
        assert level == expected


def test_level_mapper_rejects_inverted_range():
    with pytest.raises(ValueError, match="k_min"):
        LevelMapper(5, 2)


# ------------------------------------------------------------------------------ Pooler

def test_convert_to_roi_format_adds_batch_indices():
    pooler = Pooler((2, 2), scales=(1.0,), sampling_ratio=2)
    rois = pooler.convert_to_roi_format([
        _boxlist([[0, 1, 2, 3], [4, 5, 6, 7]]), _boxlist([]), _boxlist([[8, 9, 10, 11]]),
    ])
    expected = torch.tensor([[0, 0, 1, 2, 3], [0, 4, 5, 6, 7], [2, 8, 9, 10, 11]],
                            dtype=torch.float32)
    assert torch.equal(rois, expected)


def test_single_level_pooler_equals_roi_align():
    torch.manual_seed(0)
    features = torch.randn(2, 3, 16, 20)
    boxes = [_boxlist([[0, 0, 60, 40], [10.5, 3.2, 30.7, 50.1]]),
             _boxlist([[5, 5, 70, 60]])]
    pooler = Pooler((5, 4), scales=(0.25,), sampling_ratio=2)
    result = pooler([features], boxes)
    rois = torch.tensor([[0, 0, 0, 60, 40], [0, 10.5, 3.2, 30.7, 50.1], [1, 5, 5, 70, 60]])
    expected = ROIAlign((5, 4), spatial_scale=0.25, sampling_ratio=2)(features, rois)
    assert result.shape == (3, 3, 5, 4)
    torch.testing.assert_close(result, expected)


def test_aligned_flag_reaches_roi_align():
    torch.manual_seed(0)
    features = torch.randn(1, 2, 12, 12)
    boxes = [_boxlist([[2, 3, 30, 25]])]
    legacy = Pooler((3, 3), scales=(0.5,), sampling_ratio=2)([features], boxes)
    aligned = Pooler((3, 3), scales=(0.5,), sampling_ratio=2, aligned=True)([features], boxes)
    expected = ROIAlign((3, 3), 0.5, 2, aligned=True)(
        features, torch.tensor([[0.0, 2, 3, 30, 25]]))
    torch.testing.assert_close(aligned, expected)
    assert not torch.allclose(legacy, aligned)


SCALES = (1 / 4, 1 / 8, 1 / 16, 1 / 32)
IMAGE = 512


def _pyramid(num_images, channels, constant_per_level=False, seed=0):
    """Feature maps P2..P5 of IMAGE x IMAGE images (random, or level l filled with l + 1)."""
    torch.manual_seed(seed)
    maps = []
    for level, scale in enumerate(SCALES):
        side = int(IMAGE * scale)
        if constant_per_level:
            maps.append(torch.full((num_images, channels, side, side), float(level + 1)))
        else:
            maps.append(torch.randn(num_images, channels, side, side))
    return maps


def _multi_level_boxes():
    # legacy sides 20, 112, 224 | 500, 60, 300 -> levels 2, 3, 4 | 5, 2, 4 (indices 0 1 2 | 3 0 2)
    first = _boxlist([[10, 10, 29, 29], [30, 40, 141, 151], [0, 0, 223, 223]], (IMAGE, IMAGE))
    second = _boxlist([[0, 0, 499, 499], [100, 100, 159, 159], [5, 5, 304, 304]], (IMAGE, IMAGE))
    return [first, second]


EXPECTED_LEVELS = [0, 1, 2, 3, 0, 2]


def test_multi_level_pooler_uses_each_box_level():
    features = _pyramid(2, 3, constant_per_level=True)
    boxes = _multi_level_boxes()
    pooler = Pooler((4, 4), scales=SCALES, sampling_ratio=2)
    result = pooler(features, boxes)
    assert result.shape == (6, 3, 4, 4)
    # a constant map pools to its constant: each row tells which level it came from
    assert pooler.map_levels(boxes).tolist() == EXPECTED_LEVELS
    for row, level in zip(result, EXPECTED_LEVELS):
        torch.testing.assert_close(row, torch.full_like(row, level + 1.0))


def test_multi_level_pooler_matches_roi_align_per_level_and_keeps_order():
    features = _pyramid(2, 3)
    boxes = _multi_level_boxes()
    pooler = Pooler((3, 5), scales=SCALES, sampling_ratio=0)
    result = pooler(features, boxes)
    rois = pooler.convert_to_roi_format(boxes)
    assert pooler.map_levels(boxes).tolist() == EXPECTED_LEVELS
    for k, level in enumerate(EXPECTED_LEVELS):
        single = ROIAlign((3, 5), SCALES[level], 0)(features[level], rois[k:k + 1])
        torch.testing.assert_close(result[k:k + 1], single)


def test_multi_level_pooler_gradients_reach_the_used_levels():
    features = [f.requires_grad_() for f in _pyramid(2, 2)]
    boxes = [_boxlist([[10, 10, 29, 29]]), _boxlist([[0, 0, 223, 223]])]  # levels 0 and 2
    Pooler((2, 2), scales=SCALES, sampling_ratio=2)(features, boxes).sum().backward()
    used = [f.grad is not None and f.grad.abs().sum().item() > 0 for f in features]
    assert used == [True, False, True, False]
    # image 0's box only touches image 0 of its level, image 1's box only image 1
    assert features[0].grad[1].abs().sum() == 0 and features[0].grad[0].abs().sum() > 0
    assert features[2].grad[0].abs().sum() == 0 and features[2].grad[1].abs().sum() > 0


@pytest.mark.parametrize("scales", [(1 / 16,), SCALES])
def test_pooler_with_no_boxes_gives_empty_output(scales):
    features = _pyramid(2, 3) if len(scales) > 1 else [torch.randn(2, 3, 16, 16)]
    pooler = Pooler((7, 7), scales=scales, sampling_ratio=2)
    result = pooler(features, [_boxlist([]), _boxlist([])])
    assert result.shape == (0, 3, 7, 7)


def test_pooler_with_some_empty_images():
    features = _pyramid(3, 2, constant_per_level=True)
    boxes = [_boxlist([]), _boxlist([[0, 0, 223, 223]]), _boxlist([])]
    result = Pooler((2, 2), scales=SCALES, sampling_ratio=2)(features, boxes)
    assert result.shape == (1, 2, 2, 2)
    torch.testing.assert_close(result, torch.full_like(result, 3.0))


def test_pooler_rejects_bad_arguments():
    with pytest.raises(ValueError, match="power of 2"):
        Pooler((2, 2), scales=(1 / 4, 1 / 6), sampling_ratio=2)
    with pytest.raises(ValueError, match="halve"):
        Pooler((2, 2), scales=(1 / 4, 1 / 16), sampling_ratio=2)
    pooler = Pooler((2, 2), scales=SCALES, sampling_ratio=2)
    with pytest.raises(ValueError, match="feature maps"):
        pooler(_pyramid(1, 2)[:2], [_boxlist([[0, 0, 10, 10]])])


def test_make_pooler_reads_the_head_config():
    cfg = default_cfg.clone()
    cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 5
    cfg.MODEL.ROI_BOX_HEAD.POOLER_SCALES = SCALES
    cfg.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO = 2
    pooler = make_pooler(cfg, "ROI_BOX_HEAD")
    assert len(pooler.poolers) == 4
    assert pooler.output_size == (5, 5)
    assert pooler.map_levels.k_min == 2 and pooler.map_levels.k_max == 5
    assert pooler.map_levels.legacy_plus_one is True
    assert all(not p.aligned for p in pooler.poolers)
    result = pooler(_pyramid(2, 3), _multi_level_boxes())
    assert result.shape == (6, 3, 5, 5)

    cfg.MODEL.BOX_CONVENTION_LEGACY = False
    modern = make_pooler(cfg, "ROI_BOX_HEAD")
    assert all(p.aligned for p in modern.poolers)
    assert modern.map_levels.legacy_plus_one is False
    with pytest.raises(KeyError, match="NOT_A_HEAD"):
        make_pooler(cfg, "NOT_A_HEAD")
