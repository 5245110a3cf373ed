"""torch.ops.maskrcnn.paste_masks against the published pasting algorithms (tests/modeling/
test_mask_head.py's reference_paste: maskrcnn-benchmark's F.interpolate paste, Detectron2's
grid_sample paste), in float64 where the two can be compared exactly."""
import math

import pytest
import torch

from maskrcnn.layers import paste_masks
from tests.modeling.test_mask_head import reference_paste

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
HEIGHT, WIDTH = 37, 51


def random_case(num, mask_size=12, dtype=torch.float64, seed=0):
    """Masks and boxes incl. boxes partly / fully outside the image, tiny, inverted and huge ones."""
    gen = torch.Generator().manual_seed(seed)
    masks = torch.rand(num, 1, mask_size, mask_size, generator=gen, dtype=dtype)
    x1y1 = torch.rand(num, 2, generator=gen, dtype=dtype) * torch.tensor([WIDTH, HEIGHT], dtype=dtype) - 8
    wh = torch.rand(num, 2, generator=gen, dtype=dtype) * 40 + 0.3
    boxes = torch.cat([x1y1, x1y1 + wh], dim=1)
    extras = torch.tensor([
        [60.0, 50.0, 70.0, 60.0],     # outside the image
        [10.0, 10.0, 10.0, 10.0],     # zero size
        [20.0, 15.0, 18.0, 12.0],     # inverted
        [-100.0, -80.0, 300.0, 200.0],  # covers the image
        [3.0, 4.0, 13.0, 24.0],       # integer corners
    ], dtype=dtype)
    boxes[: len(extras)] = extras[: num]
    return masks, boxes


def reference(masks, boxes, threshold, padding, legacy):
    return torch.stack([
        reference_paste(m[0], b, HEIGHT, WIDTH, threshold, padding, legacy) for m, b in zip(masks, boxes)
    ])[:, None]


@pytest.mark.parametrize("legacy", [True, False])
@pytest.mark.parametrize("padding", [0, 1, 3])
def test_values_match_the_reference_in_float64(legacy, padding):
    masks, boxes = random_case(14)
    pasted = paste_masks(masks, boxes, HEIGHT, WIDTH, threshold=-1, padding=padding, legacy_plus_one=legacy)
    assert pasted.dtype == torch.float64 and pasted.shape == (14, 1, HEIGHT, WIDTH)
    expected = reference(masks, boxes, None, padding, legacy)
    torch.testing.assert_close(pasted, expected, rtol=0, atol=1e-12)
    assert pasted[0].sum() == 0 and pasted[3].count_nonzero() > 0


@pytest.mark.parametrize("legacy", [True, False])
@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5])
def test_thresholded_masks_match_the_reference(legacy, threshold):
    masks, boxes = random_case(14, seed=1)
    pasted = paste_masks(masks, boxes, HEIGHT, WIDTH, threshold=threshold, padding=1, legacy_plus_one=legacy)
    assert pasted.dtype == torch.uint8
    values = reference(masks, boxes, None, 1, legacy)
    undecided = (values - threshold).abs() < 1e-9
    assert torch.equal(pasted.bool() | undecided, (values > threshold) | undecided)
    assert pasted.sum() > 0


@pytest.mark.parametrize("legacy", [True, False])
def test_float32_follows_the_float32_reference(legacy):
    """float32 inputs use float32 geometry, as the reference (and F.interpolate) do."""
    masks, boxes = random_case(14, dtype=torch.float32, seed=2)
    pasted = paste_masks(masks, boxes, HEIGHT, WIDTH, threshold=-1, padding=1, legacy_plus_one=legacy)
    expected = reference(masks, boxes, None, 1, legacy)
    torch.testing.assert_close(pasted, expected, rtol=0, atol=1e-5)
    binary = paste_masks(masks, boxes, HEIGHT, WIDTH, threshold=0.5, padding=1, legacy_plus_one=legacy)
    assert (binary != reference(masks, boxes, 0.5, 1, legacy)).sum() <= 3


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_masks(dtype):
    masks, boxes = random_case(6, dtype=torch.float32, seed=3)
    pasted = paste_masks(masks.to(dtype), boxes, HEIGHT, WIDTH, threshold=-1)
    assert pasted.dtype == dtype
    expected = paste_masks(masks.to(dtype).float(), boxes, HEIGHT, WIDTH, threshold=-1)
    torch.testing.assert_close(pasted.float(), expected, rtol=0, atol=1e-2)


def test_non_finite_boxes_paste_nothing_and_rank3_masks_are_accepted():
    masks = torch.ones(3, 8, 8)
    boxes = torch.tensor([[math.nan, 0.0, 10.0, 10.0], [0.0, 0.0, math.inf, 10.0], [2.0, 2.0, 9.0, 9.0]])
    pasted = paste_masks(masks, boxes, HEIGHT, WIDTH)
    assert pasted[0].sum() == 0 and pasted[2].sum() > 0


def test_empty_inputs():
    assert paste_masks(torch.zeros(0, 1, 28, 28), torch.zeros(0, 4), HEIGHT, WIDTH).shape == (0, 1, HEIGHT, WIDTH)
    masks, boxes = random_case(3)
    assert paste_masks(masks, boxes, 0, WIDTH).shape == (3, 1, 0, WIDTH)
    assert paste_masks(masks, boxes, HEIGHT, 0, threshold=-1).shape == (3, 1, HEIGHT, 0)


@pytest.mark.parametrize("masks, boxes, kwargs, message", [
    (torch.zeros(2, 2, 5, 5), torch.zeros(2, 4), {}, "masks must be a 4-D tensor of shape \\[N, 1, M, M\\]"),
    (torch.zeros(2, 1, 5, 5), torch.zeros(2, 5), {}, "boxes must be a 2-D tensor of shape \\[N, 4\\]"),
    (torch.zeros(2, 1, 5, 5), torch.zeros(3, 4), {}, "masks and boxes must have the same N"),
    (torch.zeros(2, 1, 5, 5, dtype=torch.int32), torch.zeros(2, 4), {}, "masks must be a floating-point"),
    (torch.zeros(2, 1, 5, 5), torch.zeros(2, 4, dtype=torch.int64), {}, "boxes must be a floating-point"),
    (torch.zeros(2, 1, 5, 5), torch.zeros(2, 4), {"padding": -1}, "padding must be >= 0"),
    (torch.zeros(2, 1, 5, 5), torch.zeros(2, 4), {"image_height": -2}, "image_height and image_width must be >= 0"),
    (torch.zeros(2, 1, 0, 5), torch.zeros(2, 4), {}, "masks must have a non-empty M x M"),
])
def test_bad_inputs_name_the_argument(masks, boxes, kwargs, message):
    args = {"image_height": HEIGHT, "image_width": WIDTH, **kwargs}
    with pytest.raises(RuntimeError, match="paste_masks: " + message):
        torch.ops.maskrcnn.paste_masks(masks, boxes, args["image_height"], args["image_width"], 0.5,
                                       args.get("padding", 1), True)


class _Paste(torch.nn.Module):
    def forward(self, masks, boxes):
        return paste_masks(masks, boxes, HEIGHT, WIDTH, threshold=0.5)


def test_torch_compile_fullgraph():
    masks, boxes = random_case(5, dtype=torch.float32)
    compiled = torch.compile(_Paste(), fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(masks, boxes), _Paste()(masks, boxes))


def test_torch_export():
    masks, boxes = random_case(5, dtype=torch.float32)
    exported = torch.export.export(_Paste(), (masks, boxes))
    assert any("maskrcnn.paste_masks" in str(node.target) for node in exported.graph.nodes)
    assert torch.equal(exported.module()(masks, boxes), _Paste()(masks, boxes))


@needs_cuda
@pytest.mark.parametrize("legacy", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_cuda_matches_cpu(legacy, dtype):
    masks, boxes = random_case(14, dtype=torch.float32, seed=5)
    masks = masks.to(dtype)
    for threshold in (-1, 0.5):
        cpu = paste_masks(masks, boxes, HEIGHT, WIDTH, threshold, 1, legacy)
        cuda = paste_masks(masks.cuda(), boxes.cuda(), HEIGHT, WIDTH, threshold, 1, legacy).cpu()
        if threshold < 0:
            torch.testing.assert_close(cuda.float(), cpu.float(), rtol=0, atol=1e-5 if dtype.itemsize >= 4 else 1e-2)
        else:
            assert (cuda != cpu).sum() <= 3
