import math

import pytest
import torch

from maskrcnn.modeling.box_coder import BoxCoder


def _random_boxes(n, generator, dtype=torch.float64):
    top_left = torch.rand(n, 2, generator=generator, dtype=dtype) * 100
    sizes = torch.rand(n, 2, generator=generator, dtype=dtype) * 50 + 2
    return torch.cat([top_left, top_left + sizes], dim=1)


@pytest.mark.parametrize("legacy", [True, False])
@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_decode_inverts_encode(legacy, weights):
    g = torch.Generator().manual_seed(1)
    proposals = _random_boxes(40, g)
    gt = _random_boxes(40, g)
    coder = BoxCoder(weights, legacy_plus_one=legacy)
    decoded = coder.decode(coder.encode(gt, proposals), proposals)
    torch.testing.assert_close(decoded, gt, rtol=0, atol=1e-9)


def test_encode_matches_hand_computed_targets():
    # proposal (0, 0, 9, 19): legacy w = 10, h = 20, centre (5, 10)
    # gt (2, 4, 21, 23): legacy w = 20, h = 20, centre (12, 14)
    proposals = torch.tensor([[0.0, 0.0, 9.0, 19.0]])
    gt = torch.tensor([[2.0, 4.0, 21.0, 23.0]])
    legacy = BoxCoder((10.0, 10.0, 5.0, 5.0)).encode(gt, proposals)
    expected = torch.tensor([[10 * 7 / 10, 10 * 4 / 20, 5 * math.log(2.0), 5 * math.log(1.0)]])
    torch.testing.assert_close(legacy, expected)
    # modern: proposal w = 9, h = 19, centre (4.5, 9.5); gt w = 19, h = 19, centre (11.5, 13.5)
    modern = BoxCoder((1.0, 1.0, 1.0, 1.0), legacy_plus_one=False).encode(gt, proposals)
    expected = torch.tensor([[7 / 9, 4 / 19, math.log(19 / 9), math.log(19 / 19)]])
    torch.testing.assert_close(modern, expected)


def test_decode_matches_hand_computed_boxes():
    boxes = torch.tensor([[0.0, 0.0, 9.0, 9.0]])
    deltas = torch.tensor([[0.1, -0.2, 0.0, math.log(2.0)]])
    # legacy: w = h = 10, centre (5, 5) -> centre (6, 3), size (10, 20);
    # x2 = centre + w / 2 - 1 as in maskrcnn-benchmark
    legacy = BoxCoder((1.0, 1.0, 1.0, 1.0)).decode(deltas, boxes)
    torch.testing.assert_close(legacy, torch.tensor([[1.0, -7.0, 10.0, 12.0]]))
    # modern: w = h = 9, centre (4.5, 4.5) -> centre (5.4, 2.7), size (9, 18)
    modern = BoxCoder((1.0, 1.0, 1.0, 1.0), legacy_plus_one=False).decode(deltas, boxes)
    torch.testing.assert_close(modern, torch.tensor([[0.9, -6.3, 9.9, 11.7]]))
    # zero deltas give the box back in both conventions
    zeros = torch.zeros(1, 4)
    torch.testing.assert_close(BoxCoder((1, 1, 1, 1)).decode(zeros, boxes), boxes)
    torch.testing.assert_close(BoxCoder((1, 1, 1, 1), legacy_plus_one=False).decode(zeros, boxes), boxes)


@pytest.mark.parametrize("legacy", [True, False])
def test_decode_several_boxes_per_row_equals_decoding_each(legacy):
    g = torch.Generator().manual_seed(2)
    boxes = _random_boxes(7, g, torch.float32)
    codes = torch.randn(7, 4 * 5, generator=g)
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0), legacy_plus_one=legacy)
    decoded = coder.decode(codes, boxes)
    assert decoded.shape == (7, 20)
    for k in range(5):
        torch.testing.assert_close(decoded[:, 4 * k : 4 * k + 4], coder.decode(codes[:, 4 * k : 4 * k + 4], boxes))


def test_decode_clamps_size_deltas():
    boxes = torch.tensor([[0.0, 0.0, 15.0, 15.0]])  # legacy size 16
    codes = torch.tensor([[0.0, 0.0, 100.0, 100.0]])
    decoded = BoxCoder((1.0, 1.0, 1.0, 1.0)).decode(codes, boxes)
    assert torch.isfinite(decoded).all()
    widths = decoded[:, 2] - decoded[:, 0] + 1
    torch.testing.assert_close(widths, torch.tensor([1000.0]))  # 16 * exp(log(1000 / 16))


def test_decode_output_dtype_follows_codes():
    boxes = torch.tensor([[0.0, 0.0, 9.0, 9.0]])
    codes = torch.zeros(1, 4, dtype=torch.float64)
    assert BoxCoder((1, 1, 1, 1)).decode(codes, boxes).dtype == torch.float64


def test_empty_inputs():
    coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
    assert coder.decode(torch.zeros(0, 8), torch.zeros(0, 4)).shape == (0, 8)
    assert coder.encode(torch.zeros(0, 4), torch.zeros(0, 4)).shape == (0, 4)


def test_bad_inputs_name_the_argument():
    coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="rel_codes"):
        coder.decode(torch.zeros(3, 5), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="boxes"):
        coder.decode(torch.zeros(3, 4), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="reference_boxes"):
        coder.encode(torch.zeros(2, 4), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="weights"):
        BoxCoder((1.0, 1.0))
