"""maskrcnn.layers.nms / batched_nms against a float64 greedy reference written here."""
import pytest
import torch

from maskrcnn.layers import batched_nms, nms

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def reference_nms(boxes, scores, threshold, legacy_plus_one, idxs=None):
    """Greedy NMS in float64: visit boxes by decreasing score (stable); a visited box that no kept box
    suppressed is kept and suppresses every box of its category that intersects it with IoU > threshold."""
    b = boxes.double()
    offset = 1.0 if legacy_plus_one else 0.0
    areas = (b[:, 2] - b[:, 0] + offset) * (b[:, 3] - b[:, 1] + offset)
    order = sorted(range(len(b)), key=lambda i: (-float(scores[i]), i))
    suppressed = torch.zeros(len(b), dtype=torch.bool)
    kept = []
    for i in order:
        if suppressed[i]:
            continue
        kept.append(i)
        w = (torch.minimum(b[i, 2], b[:, 2]) - torch.maximum(b[i, 0], b[:, 0]) + offset).clamp(min=0)
        h = (torch.minimum(b[i, 3], b[:, 3]) - torch.maximum(b[i, 1], b[:, 1]) + offset).clamp(min=0)
        inter = w * h
        iou = inter / (areas[i] + areas - inter)
        hit = (inter > 0) & (iou > threshold)
        if idxs is not None:
            hit &= idxs == idxs[i]
        suppressed |= hit
    return torch.tensor(kept, dtype=torch.int64)


def random_boxes(n, seed, integer=False, dtype=torch.float64):
    """Detection-like boxes with ties, zero-area, inverted and far out-of-image ones mixed in."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(n, 2, generator=g) * 100
    size = torch.rand(n, 2, generator=g) * 40
    boxes = torch.cat([centre - size / 2, centre + size / 2], 1)
    if integer:
        boxes = boxes.round()
    special = torch.randperm(n, generator=g)[: max(n // 5, 1)]
    kinds = torch.arange(len(special)) % 4
    boxes[special[kinds == 0], 2:] = boxes[special[kinds == 0], :2]  # zero area
    inv = special[kinds == 1]
    boxes[inv] = boxes[inv][:, [2, 3, 0, 1]]  # inverted (x2 < x1, y2 < y1)
    boxes[special[kinds == 2]] *= 1e4  # huge and far out of the image
    boxes[special[kinds == 3]] -= 500  # negative coordinates
    scores = (torch.rand(n, generator=g) * 10).floor() / 10  # many ties
    return boxes.to(dtype), scores.to(dtype)


@pytest.mark.parametrize("legacy", [True, False])
@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7, 1.0])
def test_nms_matches_reference(legacy, threshold):
    for seed in range(3):
        boxes, scores = random_boxes(150, seed)
        expected = reference_nms(boxes, scores, threshold, legacy)
        assert torch.equal(nms(boxes, scores, threshold, legacy_plus_one=legacy), expected)


@pytest.mark.parametrize("legacy", [True, False])
def test_nms_float32_integer_boxes_exact_ties(legacy):
    # Integer coordinates make IoU exactly representable, including IoU == threshold (not > it).
    boxes, scores = random_boxes(300, 7, integer=True, dtype=torch.float32)
    boxes = torch.cat([boxes, torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 20]])])  # IoU 0.5 (modern)
    scores = torch.cat([scores, torch.tensor([2.0, 1.5])])
    expected = reference_nms(boxes, scores, 0.5, legacy)
    assert torch.equal(nms(boxes, scores, 0.5, legacy_plus_one=legacy), expected)


def test_nms_large_input_uses_parallel_blocks():
    # Enough boxes (> 2^20 / 64 candidates after the first block) for parallel regions: the result
    # matches the reference and does not depend on the number of threads.
    g = torch.Generator().manual_seed(3)
    n = 20000
    centre = torch.rand(n, 2, generator=g) * torch.tensor([1216.0, 800.0])
    size = 16 + torch.rand(n, 2, generator=g) * 240
    boxes = torch.cat([centre - size / 2, centre + size / 2], 1)
    scores = torch.rand(n, generator=g)
    keep = nms(boxes, scores, 0.5, legacy_plus_one=False)
    assert torch.equal(keep, reference_nms(boxes, scores, 0.5, False))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert torch.equal(nms(boxes, scores, 0.5, legacy_plus_one=False), keep)
        assert torch.equal(nms(boxes.double(), scores, 0.5, legacy_plus_one=False), keep)
    finally:
        torch.set_num_threads(threads)


def test_nms_default_is_legacy_convention():
    boxes = torch.tensor([[0.0, 0, 1, 1], [1, 0, 2, 1]])
    scores = torch.tensor([1.0, 0.9])
    # legacy: areas 4 each, overlap 1 x 2 = 2, IoU 2/6 = 1/3; modern: touching, IoU 0
    assert nms(boxes, scores, 0.3).tolist() == [0]
    assert nms(boxes, scores, 0.3, legacy_plus_one=False).tolist() == [0, 1]
    assert torch.ops.maskrcnn.nms(boxes, scores, 0.3).tolist() == [0, 1]  # the op's default is modern


def test_nms_ties_keep_lower_index_first():
    boxes = torch.tensor([[0.0, 0, 10, 10], [100, 100, 110, 110], [0, 0, 10, 10], [200, 200, 210, 210]])
    scores = torch.tensor([0.5, 0.5, 0.5, 0.9])
    assert nms(boxes, scores, 0.5).tolist() == [3, 0, 1]


@pytest.mark.parametrize("legacy", [True, False])
def test_batched_nms_matches_per_class_loop(legacy):
    boxes, scores = random_boxes(400, 11)
    idxs = torch.randint(0, 5, (400,), generator=torch.Generator().manual_seed(1))
    expected = reference_nms(boxes, scores, 0.5, legacy, idxs=idxs)
    result = batched_nms(boxes, scores, idxs, 0.5, legacy_plus_one=legacy)
    assert torch.equal(result, expected)
    # The same as running nms per class and merging by score.
    per_class = []
    for c in idxs.unique():
        members = torch.nonzero(idxs == c).squeeze(1)
        per_class.append(members[nms(boxes[members], scores[members], 0.5, legacy_plus_one=legacy)])
    merged = torch.cat(per_class)
    merged = merged[torch.sort(scores[merged], descending=True, stable=True).indices]
    assert sorted(merged.tolist()) == sorted(result.tolist())
    assert torch.equal(scores[merged], scores[result])


def test_batched_nms_large_class_and_int32_idxs():
    g = torch.Generator().manual_seed(5)
    n = 2500
    centre = torch.rand(n, 2, generator=g) * 300
    boxes = torch.cat([centre - 20, centre + 20], 1)
    scores = torch.rand(n, generator=g)
    idxs = (torch.rand(n, generator=g) < 0.9).to(torch.int32)  # one class above the "large" size
    expected = reference_nms(boxes, scores, 0.6, True, idxs=idxs)
    assert torch.equal(batched_nms(boxes, scores, idxs, 0.6), expected)


def test_nms_empty_and_single():
    empty = nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    assert empty.dtype == torch.int64 and empty.shape == (0,)
    assert batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), 0.5).shape == (0,)
    assert nms(torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([0.3]), 0.5).tolist() == [0]


def test_nms_reduced_precision_inputs():
    boxes, scores = random_boxes(100, 2, integer=True, dtype=torch.float32)
    expected = nms(boxes, scores, 0.5)
    assert torch.equal(nms(boxes.bfloat16().float(), scores.bfloat16().float(), 0.5),
                       nms(boxes.bfloat16(), scores.bfloat16(), 0.5))
    assert torch.equal(nms(boxes.half(), scores, 0.5), nms(boxes.half().float(), scores, 0.5))
    assert expected.numel() > 0


@pytest.mark.parametrize(
    "boxes, scores, message",
    [
        (torch.zeros(3, 5), torch.zeros(3), r"nms: boxes must be a 2-D tensor of shape \[N, 4\], got \[3, 5\]"),
        (torch.zeros(4), torch.zeros(1), r"nms: boxes must be a 2-D tensor of shape \[N, 4\]"),
        (torch.zeros(3, 4), torch.zeros(3, 1), r"nms: scores must be a 1-D tensor"),
        (torch.zeros(3, 4), torch.zeros(2), r"nms: boxes and scores must have the same number of rows"),
        (torch.zeros(3, 4, dtype=torch.int64), torch.zeros(3), r"nms: boxes must be a floating-point tensor"),
        (torch.zeros(3, 4), torch.zeros(3, dtype=torch.int32), r"nms: scores must be a floating-point tensor"),
    ],
)
def test_nms_bad_inputs(boxes, scores, message):
    with pytest.raises(RuntimeError, match=message):
        torch.ops.maskrcnn.nms(boxes, scores, 0.5)


def test_batched_nms_bad_idxs():
    boxes, scores = torch.zeros(3, 4), torch.zeros(3)
    with pytest.raises(RuntimeError, match=r"batched_nms: idxs must be a 1-D tensor of shape \[N\]"):
        batched_nms(boxes, scores, torch.zeros(2, dtype=torch.int64), 0.5)
    with pytest.raises(RuntimeError, match=r"batched_nms: idxs must be an integer tensor"):
        batched_nms(boxes, scores, torch.zeros(3), 0.5)


def _detections(n=200, seed=0):
    boxes, scores = random_boxes(n, seed, dtype=torch.float32)
    labels = torch.randint(0, 3, (n,), generator=torch.Generator().manual_seed(seed))
    return boxes, scores, labels


def _postprocess(boxes, scores, labels):
    keep = nms(boxes, scores, 0.5)
    keep_per_class = batched_nms(boxes, scores, labels, 0.5)
    return boxes[keep], scores[keep_per_class]


def test_nms_torch_compile_fullgraph():
    boxes, scores, labels = _detections()
    compiled = torch.compile(_postprocess, fullgraph=True, backend="eager")
    for got, expected in zip(compiled(boxes, scores, labels), _postprocess(boxes, scores, labels)):
        assert torch.equal(got, expected)


def test_nms_torch_export():
    class PostProcess(torch.nn.Module):
        def forward(self, boxes, scores, labels):
            return _postprocess(boxes, scores, labels)

    boxes, scores, labels = _detections()
    exported = torch.export.export(PostProcess(), (boxes, scores, labels))
    graph_ops = {str(node.target) for node in exported.graph.nodes if node.op == "call_function"}
    assert "maskrcnn.nms.default" in graph_ops and "maskrcnn.batched_nms.default" in graph_ops
    boxes2, scores2, labels2 = _detections(seed=1)
    for got, expected in zip(exported.module()(boxes2, scores2, labels2), _postprocess(boxes2, scores2, labels2)):
        assert torch.equal(got, expected)


def test_nms_under_cpu_autocast():
    boxes, scores, labels = _detections()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        keep = nms(boxes.bfloat16(), scores, 0.5)
        keep_batched = batched_nms(boxes, scores.bfloat16(), labels, 0.5)
    assert torch.equal(keep, nms(boxes.bfloat16().float(), scores, 0.5))
    assert torch.equal(keep_batched, batched_nms(boxes, scores.bfloat16().float(), labels, 0.5))


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("legacy", [True, False])
def test_nms_cuda_matches_cpu(dtype, legacy):
    boxes, scores = random_boxes(1000, 4, integer=True, dtype=dtype)
    cpu = nms(boxes, scores, 0.5, legacy_plus_one=legacy)
    cuda = nms(boxes.cuda(), scores.cuda(), 0.5, legacy_plus_one=legacy)
    assert torch.equal(cuda.cpu(), cpu)
    idxs = torch.randint(0, 7, (1000,))
    cpu = batched_nms(boxes, scores, idxs, 0.5, legacy_plus_one=legacy)
    cuda = batched_nms(boxes.cuda(), scores.cuda(), idxs.cuda(), 0.5, legacy_plus_one=legacy)
    assert torch.equal(cuda.cpu(), cpu)
    assert nms(boxes[:0].cuda(), scores[:0].cuda(), 0.5).shape == (0,)
