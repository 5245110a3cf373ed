"""ONNX translations of nms / batched_nms / roi_align (maskrcnn.layers.onnx_translations): one small
module using every variant (legacy and modern box convention, aligned and legacy RoIAlign, fixed and
adaptive sampling) exported once with a dynamic number of boxes, then run in onnxruntime on several
box counts (empty included) against the compiled ops."""
import pytest
import torch

from maskrcnn.layers import batched_nms, nms, roi_align

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


class _AllVariants(torch.nn.Module):
    def forward(self, features, boxes, scores, groups):
        rois = torch.cat([torch.zeros_like(boxes[:, :1]), boxes], dim=1)
        return (
            nms(boxes, scores, 0.5, legacy_plus_one=True),
            nms(boxes, scores, 0.3, legacy_plus_one=False),
            batched_nms(boxes, scores, groups, 0.5, legacy_plus_one=True),
            batched_nms(boxes, scores, groups, 0.4, legacy_plus_one=False),
            roi_align(features, rois, (7, 7), 0.25, 2, aligned=False),
            roi_align(features, rois, (5, 4), 0.5, 0, aligned=False),
            roi_align(features, rois, (7, 7), 0.25, 0, aligned=True),
            roi_align(features, rois, (6, 6), 0.125, 2, aligned=True),
        )


def _inputs(num_boxes, seed):
    generator = torch.Generator().manual_seed(seed)
    corners = torch.rand(num_boxes, 2, generator=generator) * 120 - 10  # some outside the image
    sizes = torch.rand(num_boxes, 2, generator=generator) * 50
    boxes = torch.cat([corners, corners + sizes], dim=1)
    boxes[: num_boxes // 8, 2:] = boxes[: num_boxes // 8, :2]  # degenerate (single-pixel) boxes
    scores = torch.rand(num_boxes, generator=generator)
    groups = torch.randint(0, 6, (num_boxes,), generator=generator)
    features = torch.randn(1, 4, 30, 32, generator=generator)
    return features, boxes, scores, groups


def test_onnxruntime_matches_the_compiled_ops(tmp_path):
    from maskrcnn.layers.onnx_translations import onnx_translation_table

    count = torch.export.Dim("num_boxes", min=0, max=10000)
    program = torch.onnx.export(
        _AllVariants().eval(), _inputs(200, seed=0), dynamo=True, optimize=False, verbose=False,
        custom_translation_table=onnx_translation_table(),
        dynamic_shapes=({}, {0: count}, {0: count}, {0: count}),
    )
    path = str(tmp_path / "ops.onnx")
    program.save(path)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    for num_boxes, seed in ((200, 1), (37, 2), (0, 3)):
        inputs = _inputs(num_boxes, seed)
        expected = _AllVariants()(*inputs)
        actual = session.run(None, {name: t.numpy() for name, t in zip(names, inputs)})
        for position, (want, got) in enumerate(zip(expected, actual)):
            got = torch.from_numpy(got)
            assert got.shape == want.shape, (num_boxes, position)
            if position < 4:  # kept indices, in the op's order
                assert torch.equal(got, want), (num_boxes, position)
            else:
                torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
        if num_boxes >= 100:
            assert 0 < len(expected[2]) < num_boxes  # the NMS did keep some and drop some
