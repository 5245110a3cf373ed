import numpy as np
import pytest
import torch

from maskrcnn.config import cfg
from maskrcnn.data import transforms as T
from maskrcnn.data.datasets import COCODataset


def _sample(coco_factory, tmp_path):
    ann_file, root, _ = coco_factory(tmp_path)
    ds = COCODataset(ann_file, root, False)
    image, target, _ = ds[0]
    image = np.zeros_like(image)
    masks = target.get_field("masks").get_mask_tensor().numpy()
    image[masks.any(0) > 0] = 255  # the objects are white on black, so image and masks can be compared
    return image, target


def _check_consistent(image, target):
    masks = target.get_field("masks").get_mask_tensor().numpy().astype(bool)
    white = image[..., 0] > 127
    union = masks.any(0)
    assert (white == union).mean() > 0.97
    for box, mask in zip(target.bbox.tolist(), masks):
        ys, xs = np.nonzero(mask)
        assert abs(xs.min() - box[0]) <= 2 and abs(xs.max() - box[2]) <= 2
        assert abs(ys.min() - box[1]) <= 2 and abs(ys.max() - box[3]) <= 2


@pytest.mark.parametrize("which", ["h", "v", "resize"])
def test_geometry_keeps_boxes_masks_keypoints_consistent(coco_factory, tmp_path, which):
    image, target = _sample(coco_factory, tmp_path)
    kp_before = target.get_field("keypoints").keypoints.clone()
    if which == "h":
        out, t = T.RandomHorizontalFlip(1.0)(image, target)
        kp = t.get_field("keypoints").keypoints
        # "left_x" and "right_x" swap places, coordinates mirror
        assert torch.allclose(kp[0, 0, :2], torch.tensor([80 - 1 - 12.0, 12.0]), atol=1.01)
        assert torch.allclose(kp[0, 2, :2], torch.tensor([80 - 1 - 20.0, 20.0]), atol=1.01)
        assert kp[0, 2, 2] == kp_before[0, 1, 2] and kp[0, 1, 2] == 0
    elif which == "v":
        out, t = T.RandomVerticalFlip(1.0)(image, target)
    else:
        out, t = T.Resize(120, 1000)(image, target)
        assert out.shape[:2] == (120, 160) and t.size == (160, 120)
        assert torch.allclose(t.get_field("keypoints").keypoints[0, 0, :2], kp_before[0, 0, :2] * 2, atol=0.01)
    _check_consistent(out, t)


def test_resize_respects_max_size_and_choices():
    r = T.Resize((100, 200), 250)
    sizes = {r.get_size((400, 200)) for _ in range(30)}
    assert sizes == {(200, 100), (250, 125)}


def test_color_jitter_to_tensor_normalize():
    torch.manual_seed(0)
    image = np.random.default_rng(0).integers(0, 255, size=(20, 30, 3), dtype=np.uint8)
    jit, _ = T.ColorJitter(0.4, 0.4, 0.4, 0.1)(image, None)
    assert jit.shape == image.shape and jit.dtype == np.uint8 and not np.array_equal(jit, image)
    tensor, _ = T.ToTensor()(image, None)
    assert tensor.shape == (3, 20, 30)
    assert torch.allclose(tensor[0], torch.from_numpy(image[..., 2]).float() / 255)  # RGB order
    norm, _ = T.Normalize([1.0, 2.0, 3.0], [1.0, 1.0, 2.0], to_bgr255=True)(tensor, None)
    assert torch.allclose(norm[0], torch.from_numpy(image[..., 0]).float() - 1.0, atol=1e-4)
    assert torch.allclose(norm[2], (torch.from_numpy(image[..., 2]).float() - 3.0) / 2, atol=1e-4)


def test_build_transforms():
    c = cfg.clone()
    c.INPUT.BRIGHTNESS = 0.2
    train = T.build_transforms(c, True)
    names = [type(t).__name__ for t in train.transforms]
    assert names == ["ColorJitter", "Resize", "RandomHorizontalFlip", "ToTensor", "Normalize"]
    test = T.build_transforms(c, False)
    assert [type(t).__name__ for t in test.transforms] == ["Resize", "ToTensor", "Normalize"]
    image, _ = test(np.zeros((50, 100, 3), np.uint8), None)
    assert image.shape == (3, 666, 1332)  # longer side capped at MAX_SIZE_TEST
