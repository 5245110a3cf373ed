"""torch.ops.maskrcnn.heatmaps_to_keypoints against two references written here:

* ``loop_heatmaps_to_keypoints``: the implementation the op replaced (one F.interpolate per
  detection, then torch.argmax), in float32. On the CPU the op reproduces F.interpolate's rounding
  (fused multiply-adds or not, as torch's own CPU dispatch), so the two agree bit for bit.
* ``reference_heatmaps_to_keypoints``: the bicubic resize written out from its definition (Keys'
  cubic with A = -0.75, half-pixel centres, border-clamped taps) as float64 weight matrices.
"""
import math
import os
import subprocess
import sys

import pytest
import torch
from torch.nn import functional as F

from maskrcnn.layers import heatmaps_to_keypoints

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def loop_heatmaps_to_keypoints(maps, rois):
    """The per-detection loop: resize each detection's maps to its box, arg-max, map back."""
    maps = maps.float()
    rois = rois.float()
    num, num_keypoints = maps.shape[:2]
    xy = torch.zeros((num, num_keypoints, 3))
    scores = torch.zeros((num, num_keypoints))
    widths = (rois[:, 2] - rois[:, 0]).clamp(min=1)
    heights = (rois[:, 3] - rois[:, 1]).clamp(min=1)
    widths_ceil, heights_ceil = widths.ceil(), heights.ceil()
    keypoint = torch.arange(num_keypoints)
    for i, (map_w, map_h) in enumerate(zip(widths_ceil.tolist(), heights_ceil.tolist())):
        resized = F.interpolate(maps[i : i + 1], size=(int(map_h), int(map_w)), mode="bicubic",
                                align_corners=False)[0]
        position = resized.reshape(num_keypoints, -1).argmax(dim=1)
        x_int = position % int(map_w)
        y_int = torch.div(position - x_int, int(map_w), rounding_mode="floor")
        xy[i, :, 0] = (x_int.float() + 0.5) * (widths[i] / widths_ceil[i]) + rois[i, 0]
        xy[i, :, 1] = (y_int.float() + 0.5) * (heights[i] / heights_ceil[i]) + rois[i, 1]
        scores[i] = resized[keypoint, y_int, x_int]
    xy[:, :, 2] = 1
    return xy, scores


def cubic_resize_matrix(in_size, out_size):
    """Tensor[out_size, in_size] float64: row d holds the weights output pixel d gives each input cell."""
    a = -0.75

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 <= |x| <= 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    matrix = torch.zeros(out_size, in_size, dtype=torch.float64)
    for d in range(out_size):
        u = in_size / out_size * (d + 0.5) - 0.5
        first = min(math.floor(u), in_size - 1)
        t = min(max(u - first, 0.0), 1.0)
        for offset, weight in zip((-1, 0, 1, 2), (far(t + 1), near(t), near(1 - t), far(2 - t))):
            matrix[d, min(max(first + offset, 0), in_size - 1)] += weight
    return matrix


def reference_heatmaps_to_keypoints(maps, rois):
    """float64 decoding from the definition (torch.argmax's first maximum on ties)."""
    maps, rois = maps.double(), rois.double()
    num, num_keypoints, height, width = maps.shape
    xy = torch.ones((num, num_keypoints, 3), dtype=torch.float64)
    scores = torch.zeros((num, num_keypoints), dtype=torch.float64)
    for i in range(num):
        x1, y1, x2, y2 = rois[i].tolist()
        w, h = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
        out_w, out_h = math.ceil(w), math.ceil(h)
        resized = cubic_resize_matrix(height, out_h) @ maps[i] @ cubic_resize_matrix(width, out_w).T
        position = resized.reshape(num_keypoints, -1).argmax(dim=1)
        rows, columns = position // out_w, position % out_w
        xy[i, :, 0] = (columns.double() + 0.5) * (w / out_w) + x1
        xy[i, :, 1] = (rows.double() + 0.5) * (h / out_h) + y1
        scores[i] = resized[torch.arange(num_keypoints), rows, columns]
    return xy, scores


def random_case(num=16, num_keypoints=4, height=56, width=56, dtype=torch.float32, seed=0):
    """Heatmaps and boxes incl. boxes smaller than a pixel, empty, inverted, huge and non-square."""
    gen = torch.Generator().manual_seed(seed)
    maps = (torch.randn(num, num_keypoints, height, width, generator=gen) * 4).to(dtype)
    x1y1 = torch.rand(num, 2, generator=gen) * 600 - 50
    wh = torch.rand(num, 2, generator=gen) * 280 + 20
    rois = torch.cat([x1y1, x1y1 + wh], dim=1)
    extras = torch.tensor([
        [10.0, 20.0, 10.4, 20.7],      # smaller than a pixel
        [30.0, 30.0, 30.0, 30.0],      # zero size
        [50.0, 40.0, 45.0, 38.0],      # inverted
        [-3.5, 2.25, 1190.5, 902.0],   # huge
        [7.0, 9.0, 607.0, 29.0],       # long and thin
        [0.0, 0.0, 56.0, 56.0],        # one pixel per cell
        [3.0, 4.0, 115.0, 60.0],       # 2 x 1 pixels per cell
    ])
    rois[: len(extras)] = extras[:num]
    return maps, rois.to(dtype if dtype == torch.float64 else torch.float32)


@pytest.mark.parametrize("shape", [(16, 4, 56, 56), (9, 3, 28, 40), (5, 2, 7, 3)])
def test_float32_is_bit_identical_to_the_interpolate_loop(shape):
    num, num_keypoints, height, width = shape
    maps, rois = random_case(num, num_keypoints, height, width, seed=sum(shape))
    xy, scores = heatmaps_to_keypoints(maps, rois)
    assert xy.dtype == scores.dtype == torch.float32
    assert xy.shape == (num, num_keypoints, 3) and scores.shape == (num, num_keypoints)
    want_xy, want_scores = loop_heatmaps_to_keypoints(maps, rois)
    assert torch.equal(xy, want_xy)
    assert torch.equal(scores, want_scores)


def test_float64_matches_the_reference_from_the_definition():
    maps, rois = random_case(12, 3, 56, 48, dtype=torch.float64, seed=3)
    xy, scores = heatmaps_to_keypoints(maps, rois)
    assert xy.dtype == scores.dtype == torch.float64
    want_xy, want_scores = reference_heatmaps_to_keypoints(maps, rois)
    torch.testing.assert_close(xy, want_xy, rtol=0, atol=1e-9)
    torch.testing.assert_close(scores, want_scores, rtol=1e-12, atol=1e-12)


def test_boxes_smaller_than_a_pixel_use_a_single_pixel_at_the_box_start():
    maps, _ = random_case(3, 2, seed=4)
    rois = torch.tensor([[10.0, 20.0, 10.4, 20.7], [30.0, 30.0, 30.0, 30.0], [50.0, 40.0, 45.0, 38.0]])
    xy, scores = heatmaps_to_keypoints(maps, rois)
    # one output pixel of width max(w, 1) = 1: its centre is x1 + 0.5
    torch.testing.assert_close(xy[:, :, :2], (rois[:, None, :2] + 0.5).expand(3, 2, 2), rtol=0, atol=0)
    assert torch.isfinite(scores).all()


def blob(maps, keypoint, row, column):
    maps[0, keypoint, row - 1 : row + 2, column - 1 : column + 2] = torch.tensor(
        [[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]])


def test_exact_ties_go_to_the_first_maximum_in_row_major_order():
    """Two identical blobs on a box of exactly two pixels per cell resize to bit-identical values:
    the one whose maximum comes first in row-major order (smaller row, then smaller column) wins."""
    x1, y1 = 5.0, 7.0
    rois = torch.tensor([[x1, y1, x1 + 112.0, y1 + 112.0]])
    maps = torch.zeros(1, 3, 56, 56)
    blob(maps, 1, 20, 10)
    blob(maps, 1, 20, 40)   # same row, later column
    blob(maps, 2, 10, 40)
    blob(maps, 2, 40, 10)   # later row, earlier column
    xy, scores = heatmaps_to_keypoints(maps, rois)
    want_xy, want_scores = loop_heatmaps_to_keypoints(maps, rois)
    assert torch.equal(xy, want_xy) and torch.equal(scores, want_scores)
    # keypoint 0 is all zeros: every pixel ties, the first one wins
    assert xy[0, 0, :2].tolist() == [x1 + 0.5, y1 + 0.5]
    assert abs(xy[0, 1, 0] - (x1 + 21.0)) <= 1.5 and abs(xy[0, 1, 1] - (y1 + 41.0)) <= 1.5
    assert abs(xy[0, 2, 0] - (x1 + 81.0)) <= 1.5 and abs(xy[0, 2, 1] - (y1 + 21.0)) <= 1.5
    # the other blob alone peaks at exactly the same value: the ties were exact
    single = torch.zeros(1, 3, 56, 56)
    blob(single, 1, 20, 40)
    blob(single, 2, 40, 10)
    _, single_scores = heatmaps_to_keypoints(single, rois)
    assert torch.equal(single_scores[0, 1:], scores[0, 1:])


def test_nan_counts_as_the_maximum_like_torch_argmax():
    maps, rois = random_case(7, 2, seed=5)
    maps[3, 0, 30, 12] = float("nan")  # the huge box and the one of one pixel per cell read every cell
    maps[5, 1, 3, 40] = float("nan")
    xy, scores = heatmaps_to_keypoints(maps, rois)
    want_xy, want_scores = loop_heatmaps_to_keypoints(maps, rois)
    assert torch.equal(xy, want_xy)
    torch.testing.assert_close(scores, want_scores, rtol=0, atol=0, equal_nan=True)
    assert scores[3, 0].isnan() and scores[5, 1].isnan() and not scores[:3].isnan().any()


def test_half_precision_maps_decode_as_their_float32_values():
    maps, rois = random_case(6, 3, seed=6)
    for dtype in (torch.float16, torch.bfloat16):
        xy, scores = heatmaps_to_keypoints(maps.to(dtype), rois)
        want_xy, want_scores = heatmaps_to_keypoints(maps.to(dtype).float(), rois)
        assert xy.dtype == torch.float32 and torch.equal(xy, want_xy) and torch.equal(scores, want_scores)


def test_plain_rounding_matches_torch_default_cpu_kernels():
    """With ATEN_CPU_CAPABILITY=default torch's kernels do not fuse multiply-adds; neither does the op."""
    script = (
        "import torch\n"
        "from maskrcnn.layers import heatmaps_to_keypoints\n"
        "from tests.layers.test_heatmaps_to_keypoints import loop_heatmaps_to_keypoints, random_case\n"
        "capability = torch.backends.cpu.get_cpu_capability()\n"
        "assert capability in ('DEFAULT', 'NO AVX'), capability\n"
        "maps, rois = random_case(10, 3, seed=7)\n"
        "got, want = heatmaps_to_keypoints(maps, rois), loop_heatmaps_to_keypoints(maps, rois)\n"
        "assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])\n"
        "print('ok')\n"
    )
    env = dict(os.environ, ATEN_CPU_CAPABILITY="default", PYTHONPATH=ROOT)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


def test_empty_inputs():
    xy, scores = heatmaps_to_keypoints(torch.zeros(0, 17, 56, 56), torch.zeros(0, 4))
    assert xy.shape == (0, 17, 3) and scores.shape == (0, 17)
    xy, scores = heatmaps_to_keypoints(torch.zeros(3, 0, 56, 56), torch.ones(3, 4))
    assert xy.shape == (3, 0, 3) and scores.shape == (3, 0)
    xy, scores = heatmaps_to_keypoints(torch.zeros(0, 2, 0, 0), torch.zeros(0, 4))
    assert xy.shape == (0, 2, 3)


@pytest.mark.parametrize("maps, rois, message", [
    (torch.zeros(2, 5, 5), torch.zeros(2, 4), "maps must be a 4-D tensor of shape \\[N, K, H, W\\]"),
    (torch.zeros(2, 1, 5, 5), torch.zeros(2, 5), "rois must be a 2-D tensor of shape \\[N, 4\\]"),
    (torch.zeros(2, 1, 5, 5), torch.zeros(3, 4), "maps and rois must have the same N"),
    (torch.zeros(2, 1, 5, 5, dtype=torch.int32), torch.zeros(2, 4), "maps must be a floating-point"),
    (torch.zeros(2, 1, 5, 5), torch.zeros(2, 4, dtype=torch.int64), "rois must be a floating-point"),
    (torch.zeros(2, 1, 0, 5), torch.zeros(2, 4), "maps must have a non-empty H x W"),
    (torch.zeros(2, 1, 5, 5), torch.tensor([[0.0, 0, 4, 4], [0, math.nan, 4, 4]]), "rois must be finite"),
    (torch.zeros(1, 1, 5, 5), torch.tensor([[0.0, 0, math.inf, 4]]), "rois must be finite"),
])
def test_bad_inputs_name_the_argument(maps, rois, message):
    with pytest.raises(RuntimeError, match="heatmaps_to_keypoints: " + message):
        torch.ops.maskrcnn.heatmaps_to_keypoints(maps, rois)


class _Decode(torch.nn.Module):
    def forward(self, maps, rois):
        return heatmaps_to_keypoints(maps, rois)


def test_torch_compile_fullgraph():
    maps, rois = random_case(5, 3, seed=8)
    compiled = torch.compile(_Decode(), fullgraph=True, backend="aot_eager")
    for got, want in zip(compiled(maps, rois), _Decode()(maps, rois)):
        assert torch.equal(got, want)


def test_torch_export():
    maps, rois = random_case(5, 3, seed=9)
    exported = torch.export.export(_Decode(), (maps, rois))
    assert any("maskrcnn.heatmaps_to_keypoints" in str(node.target) for node in exported.graph.nodes)
    for got, want in zip(exported.module()(maps, rois), _Decode()(maps, rois)):
        assert torch.equal(got, want)


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_cuda_matches_cpu(dtype):
    maps, rois = random_case(12, 3, seed=10)
    maps = maps.to(dtype)
    cpu_xy, cpu_scores = heatmaps_to_keypoints(maps, rois)
    cuda_xy, cuda_scores = heatmaps_to_keypoints(maps.cuda(), rois.cuda())
    torch.testing.assert_close(cuda_xy.cpu(), cpu_xy, rtol=0, atol=1e-4)
    torch.testing.assert_close(cuda_scores.cpu(), cpu_scores, rtol=1e-5, atol=1e-6)
