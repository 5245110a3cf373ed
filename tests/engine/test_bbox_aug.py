"""Test-time box augmentation: views, un-mirroring, rescaling and the per-class merge.

A stand-in detector finds the bright square of a synthetic image in whatever view it gets, so a
wrong flip or rescale puts a view's box elsewhere and the merge then keeps two boxes instead of one.
"""
import numpy as np
import pytest
import torch
from torch import nn

from maskrcnn.config import cfg as default_cfg
from maskrcnn.engine.bbox_aug import im_detect_bbox_aug, merge_detections, bbox_aug_views
from maskrcnn.structures.bounding_box import BoxList

NUM_CLASSES = 3


class BrightSquareDetector(nn.Module):
    """One RoI per image: the bounding box of the pixels brighter than the mean, in the view's
    frame; class scores (background, 1, 2) = (0.1, 0.8, 0.04: below the 0.05 threshold) in the unfiltered TTA layout."""

    def __init__(self, labelled=False):
        super().__init__()
        self.labelled = labelled
        self.calls = []

    def forward(self, images):
        self.calls.append([tuple(size) for size in images.image_sizes])
        results = []
        for tensor, (height, width) in zip(images.tensors, images.image_sizes):
            view = tensor[:, :height, :width].sum(0)
            ys, xs = torch.nonzero(view > view.mean(), as_tuple=True)
            box = torch.tensor([[xs.min(), ys.min(), xs.max(), ys.max()]], dtype=torch.float32)
            if self.labelled:
                boxlist = BoxList(box, (width, height))
                boxlist.add_field("scores", torch.tensor([0.8]))
                boxlist.add_field("labels", torch.tensor([1]))
            else:
                boxlist = BoxList(box.repeat(NUM_CLASSES, 1), (width, height))
                boxlist.add_field("scores", torch.tensor([0.1, 0.8, 0.04]))
            results.append(boxlist)
        return results


def make_cfg(h_flip=True, scales=(60, 90), scale_h_flip=True, max_size=1000):
    cfg = default_cfg.clone()
    cfg.MODEL.ROI_BOX_HEAD.NUM_CLASSES = NUM_CLASSES
    cfg.INPUT.MIN_SIZE_TEST = 40
    cfg.INPUT.MAX_SIZE_TEST = 1000
    cfg.DATALOADER.SIZE_DIVISIBILITY = 32
    cfg.TEST.BBOX_AUG.ENABLED = True
    cfg.TEST.BBOX_AUG.H_FLIP = h_flip
    cfg.TEST.BBOX_AUG.SCALES = scales
    cfg.TEST.BBOX_AUG.MAX_SIZE = max_size
    cfg.TEST.BBOX_AUG.SCALE_H_FLIP = scale_h_flip
    return cfg


def square_image(height=40, width=60, box=(10, 8, 29, 21)):
    """Dark BGR image with a white rectangle covering pixels x1..x2, y1..y2 (inclusive)."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    x1, y1, x2, y2 = box
    image[y1:y2 + 1, x1:x2 + 1] = 255
    return image


def test_views_follow_the_config():
    assert bbox_aug_views(make_cfg()) == [
        (40, 1000, False), (40, 1000, True), (60, 1000, False), (60, 1000, True),
        (90, 1000, False), (90, 1000, True)]
    assert bbox_aug_views(make_cfg(h_flip=False, scales=(), scale_h_flip=False)) == [(40, 1000, False)]
    assert bbox_aug_views(make_cfg(h_flip=False, scale_h_flip=False)) == [
        (40, 1000, False), (60, 1000, False), (90, 1000, False)]


def test_every_view_maps_back_onto_the_plain_view():
    model = BrightSquareDetector()
    cfg = make_cfg()
    image = square_image()
    results = im_detect_bbox_aug(model, [image, square_image(box=(30, 5, 50, 30))], "cpu", cfg=cfg)
    # one call per view, each resized as asked (shorter side = the scale; (h, w))
    assert [calls[0] for calls in model.calls] == [(40, 60), (40, 60), (60, 90), (60, 90), (90, 135), (90, 135)]
    assert len(results) == 2
    for result, expected in zip(results, ([10, 8, 29, 21], [30, 5, 50, 30])):
        assert result.size == (60, 40)  # the plain view's frame (w, h)
        # all six views agree after un-mirroring and rescaling, so NMS leaves one box of class 1
        assert len(result) == 1
        assert result.get_field("labels").tolist() == [1]
        assert result.get_field("scores").tolist() == pytest.approx([0.8])
        assert result.bbox[0].tolist() == pytest.approx(expected, abs=1.0)


def test_max_size_caps_the_extra_scales():
    model = BrightSquareDetector()
    im_detect_bbox_aug(model, [square_image()], "cpu",
                       cfg=make_cfg(h_flip=False, scales=(80,), scale_h_flip=False, max_size=90))
    # 80 on the shorter side would make the longer 120 > 90, so the longer side is held at 90
    assert [calls[0] for calls in model.calls] == [(40, 60), (60, 90)]


def test_wrong_flip_would_leave_two_boxes():
    # sanity of the test's premise: the mirrored view's raw box differs from the plain one
    model = BrightSquareDetector()
    cfg = make_cfg(scales=(), scale_h_flip=False)
    im_detect_bbox_aug(model, [square_image()], "cpu", cfg=cfg)
    from maskrcnn.engine import bbox_aug

    plain = model(bbox_aug.to_image_list([torch.from_numpy(square_image()).permute(2, 0, 1).float()]))[0]
    mirrored = model(bbox_aug.to_image_list(
        [torch.from_numpy(np.ascontiguousarray(square_image()[:, ::-1])).permute(2, 0, 1).float()]))[0]
    merged = merge_detections([plain, mirrored], NUM_CLASSES, 0.05, 0.5, 100)
    assert len(merged) == 2


def test_labelled_detections_merge_by_class_nms():
    model = BrightSquareDetector(labelled=True)
    results = im_detect_bbox_aug(model, [square_image()], "cpu", cfg=make_cfg())
    assert len(results[0]) == 1
    assert results[0].bbox[0].tolist() == pytest.approx([10, 8, 29, 21], abs=1.0)


def test_merge_is_per_class_thresholded_and_capped():
    box = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    view_a = BoxList(box.repeat(3, 1), (20, 20))
    view_a.add_field("scores", torch.tensor([0.5, 0.6, 0.3]))   # background, class 1, class 2
    view_b = BoxList(torch.tensor([[1.0, 1.0, 11.0, 11.0]]).repeat(3, 1), (20, 20))
    view_b.add_field("scores", torch.tensor([0.1, 0.7, 0.04]))  # class 2 below the threshold
    merged = merge_detections([view_a, view_b], 3, score_thresh=0.05, nms_thresh=0.5, detections_per_img=100)
    # class 1: the 0.7 box suppresses the overlapping 0.6 one; class 2 survives on its own;
    # the background column never becomes a detection
    assert merged.get_field("labels").tolist() == [1, 2]
    assert merged.get_field("scores").tolist() == pytest.approx([0.7, 0.3])
    assert merged.bbox[0].tolist() == [1.0, 1.0, 11.0, 11.0]
    capped = merge_detections([view_a, view_b], 3, 0.05, 0.5, detections_per_img=1)
    assert capped.get_field("scores").tolist() == pytest.approx([0.7])


def test_bad_inputs_are_named():
    model = BrightSquareDetector()
    with pytest.raises(ValueError, match=r"images\[0\] must be a BGR uint8"):
        im_detect_bbox_aug(model, [torch.zeros(3, 10, 10)], "cpu", cfg=make_cfg())
    wrong = BoxList(torch.zeros(4, 4), (10, 10))
    wrong.add_field("scores", torch.zeros(4))
    with pytest.raises(ValueError, match="not a multiple of MODEL.ROI_BOX_HEAD.NUM_CLASSES = 3"):
        merge_detections([wrong], 3, 0.05, 0.5, 100)
    assert im_detect_bbox_aug(model, [], "cpu", cfg=make_cfg()) == []
