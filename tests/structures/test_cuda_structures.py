"""Device moves and on-device indexing (CUDA only)."""
import pytest
import torch

from maskrcnn.structures.bounding_box import BoxList
from maskrcnn.structures.boxlist_ops import boxlist_iou
from maskrcnn.structures.keypoint import PersonKeypoints
from maskrcnn.structures.segmentation_mask import SegmentationMask

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@needs_cuda
def test_boxlist_fields_follow_to_cuda_and_index_there():
    boxes = BoxList([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 20.0, 20.0], [1.0, 2.0, 3.0, 4.0]], (32, 32))
    boxes.add_field("scores", torch.tensor([0.1, 0.9, 0.5]))
    boxes.add_field("masks", SegmentationMask([[[0, 0, 10, 0, 10, 10]]] * 3, (32, 32), mode="mask"))
    boxes.add_field("keypoints", PersonKeypoints(torch.ones(3, 17, 3), (32, 32)))
    on_gpu = boxes.to("cuda")
    assert on_gpu.bbox.is_cuda and on_gpu.get_field("scores").is_cuda
    assert on_gpu.get_field("masks").instances.masks.is_cuda and on_gpu.get_field("keypoints").keypoints.is_cuda
    keep = on_gpu.get_field("scores") > 0.3
    selected = on_gpu[keep]
    assert selected.get_field("scores").cpu().tolist() == pytest.approx([0.9, 0.5])
    assert len(selected.get_field("masks")) == 2 and len(on_gpu[torch.tensor([2, 0], device="cuda")]) == 2
    assert torch.allclose(boxlist_iou(on_gpu, on_gpu).cpu(), boxlist_iou(boxes, boxes))
