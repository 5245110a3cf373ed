import pytest
import torch

from maskrcnn.structures import box_convention
from maskrcnn.structures.bounding_box import FLIP_LEFT_RIGHT, FLIP_TOP_BOTTOM, BoxList

CONVENTIONS = [True, False]


def random_boxes(count, width=50, height=40, seed=0):
    generator = torch.Generator().manual_seed(seed)
    top_left = torch.rand(count, 2, generator=generator) * torch.tensor([width / 2, height / 2])
    extent = torch.rand(count, 2, generator=generator) * torch.tensor([width / 2 - 1, height / 2 - 1]) + 1
    return torch.cat([top_left, top_left + extent], dim=1)


@pytest.mark.parametrize("legacy", CONVENTIONS)
def test_xyxy_xywh_round_trip(legacy):
    boxes = random_boxes(20)
    boxlist = BoxList(boxes, (50, 40), legacy_plus_one=legacy)
    xywh = boxlist.convert("xywh")
    offset = 1 if legacy else 0
    assert torch.allclose(xywh.bbox[:, 2], boxes[:, 2] - boxes[:, 0] + offset)
    assert torch.allclose(xywh.bbox[:, 3], boxes[:, 3] - boxes[:, 1] + offset)
    back = xywh.convert("xyxy")
    assert torch.allclose(back.bbox, boxes, atol=1e-5)
    assert back.legacy_plus_one is legacy
    assert torch.allclose(xywh.area(), boxlist.area())


def test_convert_same_mode_returns_self_and_keeps_fields():
    boxlist = BoxList(random_boxes(3), (50, 40))
    boxlist.add_field("labels", torch.tensor([1, 2, 3]))
    assert boxlist.convert("xyxy") is boxlist
    assert torch.equal(boxlist.convert("xywh").get_field("labels"), torch.tensor([1, 2, 3]))


@pytest.mark.parametrize("legacy", CONVENTIONS)
def test_area_and_flip_follow_convention(legacy):
    boxlist = BoxList([[0.0, 0.0, 9.0, 4.0]], (20, 10), legacy_plus_one=legacy)
    expected_area = 10 * 5 if legacy else 9 * 4
    assert boxlist.area().item() == expected_area
    flipped = boxlist.transpose(FLIP_LEFT_RIGHT).bbox[0].tolist()
    assert flipped == ([10.0, 0.0, 19.0, 4.0] if legacy else [11.0, 0.0, 20.0, 4.0])
    flipped = boxlist.transpose(FLIP_TOP_BOTTOM).bbox[0].tolist()
    assert flipped == ([0.0, 5.0, 9.0, 9.0] if legacy else [0.0, 6.0, 9.0, 10.0])


@pytest.mark.parametrize("legacy", CONVENTIONS)
@pytest.mark.parametrize("mode", ["xyxy", "xywh"])
@pytest.mark.parametrize("method", [FLIP_LEFT_RIGHT, FLIP_TOP_BOTTOM])
def test_flip_twice_is_identity_and_preserves_area(legacy, mode, method):
    boxlist = BoxList(random_boxes(15), (50, 40), legacy_plus_one=legacy).convert(mode)
    once = boxlist.transpose(method)
    assert once.mode == mode
    assert not torch.allclose(once.bbox, boxlist.bbox)
    assert torch.allclose(once.area(), boxlist.area(), atol=1e-4)
    assert torch.allclose(once.transpose(method).bbox, boxlist.bbox, atol=1e-4)


@pytest.mark.parametrize("legacy", CONVENTIONS)
def test_resize_then_resize_back(legacy):
    boxes = random_boxes(10)
    boxlist = BoxList(boxes, (50, 40), legacy_plus_one=legacy)
    boxlist.add_field("scores", torch.arange(10.0))
    for size in [(100, 80), (75, 20)]:
        resized = boxlist.resize(size)
        assert resized.size == size
        assert torch.equal(resized.get_field("scores"), torch.arange(10.0))
        assert torch.allclose(resized.resize((50, 40)).bbox, boxes, atol=1e-4)
    scaled = boxlist.resize((100, 20)).bbox
    assert torch.allclose(scaled[:, 0::2], boxes[:, 0::2] * 2)
    assert torch.allclose(scaled[:, 1::2], boxes[:, 1::2] * 0.5)


def test_crop_shifts_and_clamps():
    boxlist = BoxList([[5.0, 5.0, 30.0, 20.0], [0.0, 0.0, 4.0, 4.0]], (50, 40))
    cropped = boxlist.crop([10, 2, 25, 30])
    assert cropped.size == (15, 28)
    assert cropped.bbox.tolist() == [[0.0, 3.0, 15.0, 18.0], [0.0, 0.0, 0.0, 2.0]]


@pytest.mark.parametrize("legacy", CONVENTIONS)
def test_clip_to_image(legacy):
    boxlist = BoxList([[-5.0, -2.0, 60.0, 30.0], [55.0, 5.0, 70.0, 9.0], [3.0, 3.0, 8.0, 8.0]], (50, 40),
                      legacy_plus_one=legacy)
    top = 49.0 if legacy else 50.0
    kept = boxlist.clip_to_image(remove_empty=False)
    assert kept.bbox.tolist() == [[0.0, 0.0, top, 30.0], [top, 5.0, top, 9.0], [3.0, 3.0, 8.0, 8.0]]
    assert len(boxlist.clip_to_image(remove_empty=True)) == 2


def test_default_convention_comes_from_box_convention():
    assert box_convention.legacy_plus_one() is True
    assert BoxList(random_boxes(1), (50, 40)).legacy_plus_one is True
    with box_convention.use_legacy_plus_one(False):
        modern = BoxList([[0.0, 0.0, 10.0, 10.0]], (50, 40))
        assert modern.legacy_plus_one is False
    assert box_convention.legacy_plus_one() is True
    # copies keep the convention they were built with, whatever the default is now
    assert modern.convert("xywh").bbox[0, 2].item() == 10.0
    assert modern[0].legacy_plus_one is False and modern.resize((100, 80)).legacy_plus_one is False
    with pytest.raises(TypeError, match="bool"):
        box_convention.set_legacy_plus_one(1)


def test_indexing_variants():
    boxes = random_boxes(6)
    boxlist = BoxList(boxes, (50, 40))
    boxlist.add_field("labels", torch.arange(6))
    one = boxlist[2]
    assert len(one) == 1 and one.get_field("labels").tolist() == [2]
    assert boxlist[-1].get_field("labels").tolist() == [5]
    assert boxlist[1:4].get_field("labels").tolist() == [1, 2, 3]
    mask = torch.tensor([True, False, True, False, False, True])
    assert boxlist[mask].get_field("labels").tolist() == [0, 2, 5]
    assert boxlist[mask.to(torch.uint8)].get_field("labels").tolist() == [0, 2, 5]
    assert boxlist[torch.tensor([4, 0])].get_field("labels").tolist() == [4, 0]
    assert torch.equal(boxlist[[4, 0]].bbox, boxes[[4, 0]])
    assert len(boxlist[torch.zeros(6, dtype=torch.bool)]) == 0
    with pytest.raises(IndexError, match="out of range"):
        boxlist[6]
    with pytest.raises(IndexError, match="mask has 3 entries"):
        boxlist[torch.tensor([True, False, True])]


def test_fields_and_copy_with_fields():
    boxlist = BoxList(random_boxes(2), (50, 40))
    boxlist.add_field("labels", torch.tensor([3, 4]))
    boxlist.add_field("scores", torch.tensor([0.5, 0.9]))
    assert boxlist.fields() == ["labels", "scores"] and boxlist.has_field("scores")
    copied = boxlist.copy_with_fields("labels")
    assert copied.fields() == ["labels"] and copied.bbox is boxlist.bbox
    assert boxlist.copy_with_fields(["labels", "masks"], skip_missing=True).fields() == ["labels"]
    with pytest.raises(KeyError, match="masks"):
        boxlist.copy_with_fields(["labels", "masks"])
    with pytest.raises(KeyError, match="no field 'masks'"):
        boxlist.get_field("masks")


def test_to_and_repr():
    boxlist = BoxList(random_boxes(2), (50, 40))
    boxlist.add_field("labels", torch.tensor([3, 4]))
    moved = boxlist.to("cpu")
    assert torch.equal(moved.bbox, boxlist.bbox) and moved.fields() == ["labels"]
    assert repr(boxlist) == "BoxList(num_boxes=2, image_width=50, image_height=40, mode=xyxy)"


def test_empty_boxlist():
    empty = BoxList(torch.zeros(0, 4), (50, 40))
    assert len(empty) == 0 and empty.area().shape == (0,)
    assert len(BoxList([], (50, 40))) == 0
    assert empty.transpose(FLIP_LEFT_RIGHT).resize((10, 10)).convert("xywh").bbox.shape == (0, 4)
    assert len(empty.clip_to_image()) == 0


def test_dtype():
    assert BoxList(torch.ones(1, 4, dtype=torch.int64), (5, 5)).bbox.dtype == torch.float32
    assert BoxList(torch.ones(1, 4, dtype=torch.float64), (5, 5)).bbox.dtype == torch.float64


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match=r"bbox must be a 2-D tensor of shape \[N, 4\], got shape \[3, 5\]"):
        BoxList(torch.zeros(3, 5), (10, 10))
    with pytest.raises(ValueError, match=r"got shape \[4\]"):
        BoxList(torch.zeros(4), (10, 10))
    with pytest.raises(ValueError, match="mode must be 'xyxy' or 'xywh', got 'cxcywh'"):
        BoxList(torch.zeros(1, 4), (10, 10), mode="cxcywh")
    with pytest.raises(ValueError, match="mode must be"):
        BoxList(torch.zeros(1, 4), (10, 10)).convert("xy")
    with pytest.raises(ValueError, match="image_size must have 2 entries"):
        BoxList(torch.zeros(1, 4), (10, 10, 3))
    with pytest.raises(TypeError, match="image_size must be a"):
        BoxList(torch.zeros(1, 4), 10)
    with pytest.raises(ValueError, match="image_size entries must be non-negative"):
        BoxList(torch.zeros(1, 4), (10, -1))
    with pytest.raises(NotImplementedError, match="FLIP_LEFT_RIGHT"):
        BoxList(torch.zeros(1, 4), (10, 10)).transpose(2)
