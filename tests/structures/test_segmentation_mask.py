import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch

from maskrcnn.structures.bounding_box import FLIP_LEFT_RIGHT, FLIP_TOP_BOTTOM
from maskrcnn.structures.segmentation_mask import (
    BinaryMaskList,
    PolygonInstance,
    PolygonList,
    SegmentationMask,
)

WIDTH, HEIGHT = 64, 48
# a triangle, an L shape, and a square plus a small square (two polygons, one object)
POLYGONS = [
    [[4, 4, 40, 6, 20, 36]],
    [[30, 10, 60, 10, 60, 40, 45, 40, 45, 25, 30, 25]],
    [[5, 30, 20, 30, 20, 45, 5, 45], [22, 2, 28, 2, 28, 8, 22, 8]],
]


def per_instance_iou(first, second):
    first, second = first.bool(), second.bool()
    if first.dim() == 2:
        first, second = first[None], second[None]
    inter = (first & second).sum((1, 2)).float()
    union = (first | second).sum((1, 2)).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def within_one_pixel(first, second):
    """Every pixel of each mask lies within one pixel (3x3 neighbourhood) of the other mask."""
    def dilate(mask):
        mask = mask.float().reshape(-1, 1, *mask.shape[-2:])
        return torch.nn.functional.max_pool2d(mask, 3, stride=1, padding=1).reshape(first.shape) > 0

    first, second = first.bool(), second.bool()
    return bool((~first | dilate(second)).all() and (~second | dilate(first)).all())


def poly_and_mask(legacy=True):
    poly = SegmentationMask(POLYGONS, (WIDTH, HEIGHT), legacy_plus_one=legacy)
    return poly, poly.convert("mask")


def test_polygon_rasterisation_is_cocos():
    mask = SegmentationMask([[[2, 2, 12, 2, 12, 10, 2, 10]]], (16, 12)).get_mask_tensor()
    assert mask.shape == (12, 16) and mask.dtype == torch.uint8
    expected = torch.zeros(12, 16, dtype=torch.uint8)
    expected[2:10, 2:12] = 1  # pixels whose centres fall inside the polygon
    assert torch.equal(mask, expected)
    rles = mask_utils.frPyObjects(POLYGONS[2], HEIGHT, WIDTH)
    coco = torch.from_numpy(mask_utils.decode(mask_utils.merge(rles)))
    assert torch.equal(SegmentationMask([POLYGONS[2]], (WIDTH, HEIGHT)).get_mask_tensor(), coco)


def test_rle_decodes_to_the_polygon_mask():
    poly, _ = poly_and_mask()
    masks = poly.get_mask_tensor()
    compressed = [mask_utils.encode(np.asfortranarray(m.numpy())) for m in masks]
    from_rle = SegmentationMask(compressed, (WIDTH, HEIGHT), mode="mask")
    assert torch.equal(from_rle.get_mask_tensor(), masks)
    as_text = [{"size": r["size"], "counts": r["counts"].decode("ascii")} for r in compressed]
    assert torch.equal(SegmentationMask(as_text, (WIDTH, HEIGHT), mode="mask").get_mask_tensor(), masks)
    # an RLE given in poly mode is traced back into polygons that rasterise to the same mask
    assert per_instance_iou(SegmentationMask(compressed, (WIDTH, HEIGHT)).get_mask_tensor(), masks).min() > 0.99


def test_uncompressed_rle_hand_case():
    # 4 x 5 image (h x w), ones at rows 1-2, columns 1-3; counts run down the columns
    rle = {"size": [4, 5], "counts": [5, 2, 2, 2, 2, 2, 5]}
    mask = BinaryMaskList([rle], (5, 4)).masks
    expected = torch.zeros(1, 4, 5, dtype=torch.uint8)
    expected[0, 1:3, 1:4] = 1
    assert torch.equal(mask, expected)
    with pytest.raises(ValueError, match=r"RLE 0 has size \[4, 5\] \(h, w\) but the image is \[5, 5\]"):
        BinaryMaskList([rle], (5, 5))


def test_mask_to_polygon_to_mask_round_trip():
    _, mask = poly_and_mask()
    back = mask.convert("poly").convert("mask")
    assert torch.equal(back.get_mask_tensor(), mask.get_mask_tensor())
    speck = torch.zeros(1, 10, 10, dtype=torch.uint8)
    speck[0, 3, 3] = 1
    speck[0, 5:8, 1:9] = 1
    traced = SegmentationMask(speck, (10, 10), mode="poly")
    assert len(traced.instances.polygons[0]) == 2
    assert torch.equal(traced.get_mask_tensor(), speck[0])


@pytest.mark.parametrize("legacy", [True, False])
@pytest.mark.parametrize("method", [FLIP_LEFT_RIGHT, FLIP_TOP_BOTTOM])
def test_flip_poly_and_mask_agree_within_a_pixel(legacy, method):
    poly, mask = poly_and_mask(legacy)
    from_poly = poly.transpose(method).get_mask_tensor()
    from_mask = mask.transpose(method).get_mask_tensor()
    if legacy:
        # the legacy convention maps x to W - 1 - x: one pixel short of the exact mirror
        dim = 2 if method == FLIP_LEFT_RIGHT else 1
        from_poly = torch.roll(from_poly, shifts=1, dims=dim)
    assert per_instance_iou(from_poly, from_mask).min() > 0.97
    assert within_one_pixel(poly.transpose(method).get_mask_tensor(), from_mask)
    assert torch.equal(poly.transpose(method).transpose(method).get_mask_tensor(), poly.get_mask_tensor())
    assert torch.equal(mask.transpose(method).transpose(method).get_mask_tensor(), mask.get_mask_tensor())


@pytest.mark.parametrize("size", [(96, 72), (32, 24), (100, 30)])
def test_resize_poly_and_mask_agree(size):
    poly, mask = poly_and_mask()
    from_poly = poly.resize(size).get_mask_tensor()
    from_mask = mask.resize(size).get_mask_tensor()
    assert from_poly.shape == from_mask.shape == (3, size[1], size[0])
    assert per_instance_iou(from_poly, from_mask).min() > 0.88
    assert within_one_pixel(from_poly, from_mask)


def test_resize_and_back_polygons_exact():
    poly, _ = poly_and_mask()
    back = poly.resize((128, 24)).resize((WIDTH, HEIGHT))
    for before, after in zip(poly.instances.polygons, back.instances.polygons):
        for p, q in zip(before.polygons, after.polygons):
            assert torch.allclose(p, q)


@pytest.mark.parametrize("box", [(10, 5, 50, 40), (-5, -5, 30, 30), (10.4, 5.6, 50.2, 40.7)])
def test_crop_poly_and_mask_agree(box):
    poly, mask = poly_and_mask()
    from_poly, from_mask = poly.crop(box), mask.crop(box)
    assert from_mask.size == (round(box[2]) - round(box[0]), round(box[3]) - round(box[1]))
    assert from_poly.size == pytest.approx((box[2] - box[0], box[3] - box[1]))
    iou = per_instance_iou(from_poly.get_mask_tensor(), from_mask.get_mask_tensor())
    assert iou.min() > 0.95
    assert within_one_pixel(from_poly.get_mask_tensor(), from_mask.get_mask_tensor())


def test_within_one_pixel_detects_larger_shifts():
    _, mask = poly_and_mask()
    tensor = mask.get_mask_tensor()
    assert within_one_pixel(tensor, torch.roll(tensor, 1, dims=2))
    assert not within_one_pixel(tensor, torch.roll(tensor, 2, dims=2))


def test_crop_outside_image_is_zero_padded():
    _, mask = poly_and_mask()
    cropped = mask.crop((-4, -2, 10, 10)).get_mask_tensor()
    assert cropped.shape == (3, 12, 14)
    assert cropped[:, :2].sum() == 0 and cropped[:, :, :4].sum() == 0
    assert torch.equal(cropped[:, 2:, 4:], mask.get_mask_tensor()[:, :10, :10])


def test_crop_then_resize_like_mask_targets():
    poly, mask = poly_and_mask()
    for instance_poly, instance_mask in zip(poly, mask):
        from_poly = instance_poly.crop((2, 2, 42, 38)).resize((28, 28)).get_mask_tensor()
        from_mask = instance_mask.crop((2, 2, 42, 38)).resize((28, 28)).get_mask_tensor()
        assert from_poly.shape == (28, 28)
        assert per_instance_iou(from_poly, from_mask).item() > 0.85


def test_empty_instances_and_polygons():
    empty = SegmentationMask([], (WIDTH, HEIGHT))
    assert len(empty) == 0 and empty.get_mask_tensor().shape == (0, HEIGHT, WIDTH)
    assert empty.convert("mask").get_mask_tensor().shape == (0, HEIGHT, WIDTH)
    assert len(empty.resize((32, 24)).transpose(FLIP_LEFT_RIGHT).crop((0, 0, 10, 10))) == 0
    empty_mask = SegmentationMask(torch.zeros(0, HEIGHT, WIDTH), (WIDTH, HEIGHT), mode="mask")
    assert empty_mask.resize((32, 24)).get_mask_tensor().shape == (0, 24, 32)
    assert len(SegmentationMask([], (WIDTH, HEIGHT), mode="mask")) == 0
    # an object without usable polygons keeps its place and rasterises to zeros
    masks = SegmentationMask([[], [[1, 1, 5, 5]], POLYGONS[0]], (WIDTH, HEIGHT))
    assert len(masks) == 3
    tensor = masks.get_mask_tensor()
    assert tensor.shape == (3, HEIGHT, WIDTH) and tensor[0].sum() == 0 and tensor[1].sum() == 0 and tensor[2].sum() > 0
    assert len(masks.convert("mask").convert("poly")) == 3


@pytest.mark.parametrize("mode", ["poly", "mask"])
def test_indexing_variants(mode):
    masks = SegmentationMask(POLYGONS, (WIDTH, HEIGHT), mode=mode)
    full = masks.get_mask_tensor()
    assert torch.equal(masks[1].get_mask_tensor(), full[1])
    assert torch.equal(masks[-1].get_mask_tensor(), full[2])
    assert torch.equal(masks[0:2].get_mask_tensor(), full[0:2])
    assert torch.equal(masks[torch.tensor([True, False, True])].get_mask_tensor(), full[[0, 2]])
    assert torch.equal(masks[torch.tensor([1, 1, 0], dtype=torch.uint8)].get_mask_tensor(), full[[0, 1]])
    assert torch.equal(masks[torch.tensor([2, 0])].get_mask_tensor(), full[[2, 0]])
    assert torch.equal(masks[[2, 1]].get_mask_tensor(), full[[2, 1]])
    assert len(masks[torch.zeros(3, dtype=torch.bool)]) == 0
    assert [single.get_mask_tensor().shape for single in masks] == [(HEIGHT, WIDTH)] * 3
    with pytest.raises(IndexError):
        masks[3]


def test_to_and_repr():
    poly, mask = poly_and_mask()
    assert poly.to("cpu").mode == "poly" and torch.equal(mask.to("cpu").get_mask_tensor(), mask.get_mask_tensor())
    assert repr(poly) == "SegmentationMask(num_instances=3, image_width=64, image_height=48, mode=poly)"
    assert repr(mask.instances) == "BinaryMaskList(num_instances=3, image_width=64, image_height=48)"


def test_internal_classes():
    instance = PolygonInstance([[0, 0, 4, 0, 4, 4], [1, 1]], (8, 8))
    assert len(instance) == 1 and instance.convert_to_binarymask().shape == (8, 8)
    polygon_list = PolygonList([instance, [[0, 0, 2, 0, 2, 2]]], (8, 8))
    assert len(polygon_list) == 2 and isinstance(polygon_list.convert_to_binarymask(), BinaryMaskList)
    bools = torch.zeros(2, 8, 8, dtype=torch.bool)
    bools[1, 2:4, 2:4] = True
    binary = BinaryMaskList(bools, (8, 8))
    assert binary.masks.dtype == torch.uint8 and binary.masks.sum() == 4
    assert BinaryMaskList([bools[0], bools[1]], (8, 8)).masks.shape == (2, 8, 8)


def test_legacy_convention_carried():
    modern = SegmentationMask(POLYGONS, (WIDTH, HEIGHT), legacy_plus_one=False)
    flipped = modern.transpose(FLIP_LEFT_RIGHT).instances.polygons[0].polygons[0]
    assert flipped[0::2].tolist() == [60.0, 24.0, 44.0]
    legacy = SegmentationMask(POLYGONS, (WIDTH, HEIGHT), legacy_plus_one=True)
    assert legacy.transpose(FLIP_LEFT_RIGHT).instances.polygons[0].polygons[0][0::2].tolist() == [59.0, 23.0, 43.0]
    assert modern.convert("mask").convert("poly").legacy_plus_one is False


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="mode must be 'poly' or 'mask', got 'rle'"):
        SegmentationMask(POLYGONS, (WIDTH, HEIGHT), mode="rle")
    with pytest.raises(ValueError, match=r"masks of shape \[2, 10, 12\] \[N, H, W\] do not match size \(10, 12\)"):
        SegmentationMask(torch.zeros(2, 10, 12), (10, 12), mode="mask")
    with pytest.raises(ValueError, match="odd number of coordinates"):
        SegmentationMask([[[1, 2, 3, 4, 5, 6, 7]]], (10, 10))
    with pytest.raises(TypeError, match="wrap a single polygon in a list"):
        SegmentationMask([[1, 2, 3, 4, 5, 6]], (10, 10))
    with pytest.raises(ValueError, match="convert: mode must be"):
        SegmentationMask(POLYGONS, (WIDTH, HEIGHT)).convert("bitmap")
