import pytest
import torch

from maskrcnn.config import cfg as default_cfg
from maskrcnn.modeling.rpn.anchor_generator import (
    AnchorGenerator,
    generate_anchors,
    generate_centered_anchors,
    make_anchor_generator,
    make_anchor_generator_retinanet,
)
from maskrcnn.structures.image_list import ImageList

# Detectron's cell anchors for stride 16, sizes (32, 64, 128, 256, 512), ratios (0.5, 1, 2)
# (ratio-major). Derivation of the first row: the base box (0, 0, 15, 15) has area 256 and
# centre 7.5; ratio 0.5 gives w = round(sqrt(256 / 0.5)) = round(22.63) = 23,
# h = round(23 * 0.5) = round(11.5) = 12 (half to even); size 32 scales them by 2 to 46 x 24, so
# (7.5 - 45 / 2, 7.5 - 23 / 2, 7.5 + 45 / 2, 7.5 + 23 / 2) = (-15, -4, 30, 19). Ratio 1 with size
# 128: 16 * 8 = 128 -> (7.5 - 63.5, ..., 7.5 + 63.5) = (-56, -56, 71, 71). The rows with sizes
# 128 / 256 / 512 are the classic Faster R-CNN anchors (-84, -40, 99, 55), ...
DETECTRON_STRIDE16_ANCHORS = [
    [-15.0, -4.0, 30.0, 19.0],
    [-38.0, -16.0, 53.0, 31.0],
    [-84.0, -40.0, 99.0, 55.0],
    [-176.0, -88.0, 191.0, 103.0],
    [-360.0, -184.0, 375.0, 199.0],
    [-8.0, -8.0, 23.0, 23.0],
    [-24.0, -24.0, 39.0, 39.0],
    [-56.0, -56.0, 71.0, 71.0],
    [-120.0, -120.0, 135.0, 135.0],
    [-248.0, -248.0, 263.0, 263.0],
    [-3.0, -14.0, 18.0, 29.0],
    [-14.0, -36.0, 29.0, 51.0],
    [-36.0, -80.0, 51.0, 95.0],
    [-80.0, -168.0, 95.0, 183.0],
    [-168.0, -344.0, 183.0, 359.0],
]

# torchvision 0.28's AnchorGenerator.generate_anchors((32, 64), (0.5, 1.0, 2.0)), obtained once
# by running torchvision in the peer environment (.venv-peer) and copied here.
TORCHVISION_32_64_ANCHORS = [
    [-23.0, -11.0, 23.0, 11.0],
    [-45.0, -23.0, 45.0, 23.0],
    [-16.0, -16.0, 16.0, 16.0],
    [-32.0, -32.0, 32.0, 32.0],
    [-11.0, -23.0, 11.0, 23.0],
    [-23.0, -45.0, 23.0, 45.0],
]


def _image_list(sizes, padded=None):
    height = padded[0] if padded else max(h for h, _ in sizes)
    width = padded[1] if padded else max(w for _, w in sizes)
    return ImageList(torch.zeros(len(sizes), 3, height, width), sizes)


def test_legacy_cell_anchors_equal_detectron():
    anchors = generate_anchors(16, (32, 64, 128, 256, 512), (0.5, 1.0, 2.0))
    assert anchors.tolist() == DETECTRON_STRIDE16_ANCHORS


def test_legacy_fpn_level_anchors_equal_detectron():
    # P2 (stride 4, size 32): base (0, 0, 3, 3), centre 1.5, ratio 0.5 -> w = round(sqrt(32)) = 6,
    # h = 3; x8 -> 48 x 24 -> (1.5 - 23.5, 1.5 - 11.5, 1.5 + 23.5, 1.5 + 11.5)
    generator = AnchorGenerator((32, 64, 128, 256, 512), (0.5, 1.0, 2.0), (4, 8, 16, 32, 64))
    assert generator.num_anchors_per_location() == [3] * 5
    assert generator.cell_anchors[0].tolist() == [[-22.0, -10.0, 25.0, 13.0], [-14.0, -14.0, 17.0, 17.0], [-10.0, -22.0, 13.0, 25.0]]
    # P3 (stride 8, size 64): ratio 1 -> 8 x 8 scaled by 8 -> 64 x 64 around 3.5
    assert generator.cell_anchors[1][1].tolist() == [-28.0, -28.0, 35.0, 35.0]


def test_single_level_uses_all_sizes_on_one_map():
    generator = AnchorGenerator((32, 64, 128, 256, 512), (0.5, 1.0, 2.0), (16,))
    assert generator.num_anchors_per_location() == [15]
    assert generator.cell_anchors[0].dtype == torch.float32
    assert generator.cell_anchors[0].tolist() == DETECTRON_STRIDE16_ANCHORS


def test_modern_cell_anchors_equal_torchvision():
    assert generate_centered_anchors((32, 64), (0.5, 1.0, 2.0)).tolist() == TORCHVISION_32_64_ANCHORS
    generator = AnchorGenerator((32, 64), (0.5, 1.0, 2.0), (16,), legacy_plus_one=False)
    assert generator.cell_anchors[0].tolist() == TORCHVISION_32_64_ANCHORS


@pytest.mark.parametrize("legacy", [True, False])
def test_grid_anchors_shift_cell_anchors_by_stride_location_major(legacy):
    generator = AnchorGenerator((32, 64), (0.5, 1.0, 2.0), (16,), legacy_plus_one=legacy)
    image_list = _image_list([(48, 64)])
    features = [torch.zeros(1, 8, 3, 4)]
    anchors = generator(image_list, features)
    assert len(anchors) == 1 and len(anchors[0]) == 1
    boxlist = anchors[0][0]
    assert boxlist.size == (64, 48)
    assert boxlist.mode == "xyxy"
    assert boxlist.legacy_plus_one == legacy
    assert len(boxlist) == 3 * 4 * 6
    cell = generator.cell_anchors[0]
    grid = boxlist.bbox.view(3, 4, 6, 4)
    for y in range(3):
        for x in range(4):
            shift = torch.tensor([x * 16.0, y * 16.0, x * 16.0, y * 16.0])
            assert torch.equal(grid[y, x], cell + shift)


def test_stride_from_image_size_follows_torchvision_rule():
    # P5 / P6 of an 800 x 1216 batch: 25 x 38 and 13 x 19 maps; torchvision shifts P6 by
    # (800 // 13, 1216 // 19) = (61, 64), not 64 in both directions
    sizes, ratios, strides = (256, 512), (1.0,), (32, 64)
    fixed = AnchorGenerator(sizes, ratios, strides, legacy_plus_one=False)
    derived = AnchorGenerator(sizes, ratios, strides, legacy_plus_one=False, stride_from_image_size=True)
    image_list = _image_list([(790, 1200)], padded=(800, 1216))
    features = [torch.zeros(1, 1, 25, 38), torch.zeros(1, 1, 13, 19)]
    p5_fixed, p6_fixed = (b.bbox for b in fixed(image_list, features)[0])
    p5, p6 = (b.bbox for b in derived(image_list, features)[0])
    assert torch.equal(p5, p5_fixed)
    last = p6.view(13, 19, 4)[12, 18] - derived.cell_anchors[1][0]
    assert last.tolist() == [18 * 64.0, 12 * 61.0, 18 * 64.0, 12 * 61.0]
    assert not torch.equal(p6, p6_fixed)


def test_state_dict_names_and_device_moves():
    generator = AnchorGenerator((32, 64, 128), (0.5, 1.0, 2.0), (8, 16, 32))
    assert list(generator.state_dict().keys()) == ["cell_anchors.0", "cell_anchors.1", "cell_anchors.2"]
    assert generator.to(torch.float64).cell_anchors[0].dtype == torch.float64


def test_visibility_with_straddle_threshold():
    generator = AnchorGenerator((32,), (1.0,), (16,), straddle_thresh=0)
    # legacy cell anchor (-8, -8, 23, 23): only inside an image whose map starts past the border,
    # so check the rule directly on boxes
    boxes = torch.tensor(
        [[0.0, 0.0, 63.0, 47.0], [-1.0, 0.0, 10.0, 10.0], [0.0, 0.0, 64.0, 10.0], [0.0, 0.0, 10.0, 47.5]]
    )
    assert generator.visibility(boxes, 64, 48).tolist() == [True, False, False, True]
    loose = AnchorGenerator((32,), (1.0,), (16,), straddle_thresh=2)
    assert loose.visibility(boxes, 64, 48).tolist() == [True, True, True, True]
    everything = AnchorGenerator((32,), (1.0,), (16,), straddle_thresh=-1)
    far = torch.tensor([[-100.0, -100.0, 500.0, 500.0]])
    assert everything.visibility(far, 64, 48).tolist() == [True]
    # modern convention: a box may end exactly on the image border
    modern = AnchorGenerator((32,), (1.0,), (16,), straddle_thresh=0, legacy_plus_one=False)
    assert modern.visibility(boxes, 64, 48).tolist() == [True, False, True, True]


def test_visibility_field_uses_each_images_own_size():
    generator = AnchorGenerator((16,), (1.0,), (16,), straddle_thresh=0)
    # legacy cell anchor for size 16 at stride 16 is (0, 0, 15, 15): the map tiles the image
    image_list = _image_list([(32, 48), (32, 32)], padded=(32, 48))
    anchors = generator(image_list, [torch.zeros(2, 4, 2, 3)])
    first = anchors[0][0].get_field("visibility")
    second = anchors[1][0].get_field("visibility")
    assert first.dtype == torch.bool
    assert first.tolist() == [True] * 6
    # the second image is 32 wide: the third column of anchors (32, ., 47, .) is outside
    assert second.tolist() == [True, True, False, True, True, False]
    assert anchors[1][0].size == (32, 32)


def test_builders_read_the_config():
    cfg = default_cfg.clone()
    generator = make_anchor_generator(cfg)
    assert generator.strides == (16,)
    assert generator.cell_anchors[0].tolist() == DETECTRON_STRIDE16_ANCHORS
    assert generator.legacy_plus_one

    cfg.MODEL.BOX_CONVENTION_LEGACY = False
    assert not make_anchor_generator(cfg).legacy_plus_one

    cfg = default_cfg.clone()
    cfg.MODEL.RPN.USE_FPN = True
    with pytest.raises(ValueError, match="ANCHOR_STRIDE"):
        make_anchor_generator(cfg)
    cfg.MODEL.RPN.ANCHOR_STRIDE = (4, 8, 16, 32, 64)
    assert make_anchor_generator(cfg).num_anchors_per_location() == [3] * 5

    cfg = default_cfg.clone()
    cfg.MODEL.RPN.ANCHOR_STRIDE = (4, 8)
    with pytest.raises(ValueError, match="single value"):
        make_anchor_generator(cfg)


def test_retinanet_builder_uses_octave_scales():
    cfg = default_cfg.clone()
    generator = make_anchor_generator_retinanet(cfg)
    assert generator.strides == (8, 16, 32, 64, 128)
    assert generator.num_anchors_per_location() == [9] * 5
    for level, size in enumerate((32, 64, 128, 256, 512)):
        cell = generator.cell_anchors[level].double()
        # ratio-1 anchors (rows 3..5) are square with side size * 2 ** (i / 3) (legacy "+1" widths)
        widths = cell[3:6, 2] - cell[3:6, 0] + 1
        expected = torch.tensor([size * 2 ** (i / 3) for i in range(3)], dtype=torch.float64)
        torch.testing.assert_close(widths, expected, rtol=1e-6, atol=1e-4)


def test_mismatched_fpn_sizes_raise():
    with pytest.raises(ValueError, match="anchor_strides"):
        AnchorGenerator((32, 64), (1.0,), (4, 8, 16))


def test_empty_feature_map_and_batch():
    generator = AnchorGenerator((32,), (0.5, 1.0, 2.0), (16,))
    anchors = generator(_image_list([(32, 32)]), [torch.zeros(1, 4, 0, 5)])
    assert len(anchors[0][0]) == 0
    assert generator(ImageList(torch.zeros(0, 3, 32, 32), []), [torch.zeros(0, 4, 2, 2)]) == []
