"""Shared by the inference tests: a tiny R-18-FPN Mask R-CNN config evaluated on a small shapes
subset generated into a temporary MASKRCNN_DATA_DIR."""
import hashlib

import torch

from maskrcnn.structures.bounding_box import BoxList
from tests.tiny_models import CPU_4_CLASSES, MASK_FPN, R18_FPN, make_cfg, seeded_model, zero_box_regression

# a small random model that still returns detections (score threshold 0) on 64-pixel images
TINY_MASK_RCNN = CPU_4_CLASSES + R18_FPN + MASK_FPN + [
    "MODEL.META_ARCHITECTURE", "GeneralizedRCNN",
    "MODEL.RPN.PRE_NMS_TOP_N_TEST", 100,
    "MODEL.RPN.POST_NMS_TOP_N_TEST", 20,
    "MODEL.RPN.FPN_POST_NMS_TOP_N_TEST", 20,
    "MODEL.ROI_HEADS.SCORE_THRESH", 0.0,
    "MODEL.ROI_HEADS.DETECTIONS_PER_IMG", 10,
    "DATALOADER.NUM_WORKERS", 0,
    "DATASETS.TRAIN", ("shapes_train",),
    "DATASETS.TEST", ("shapes_val",),
    "DATASETS.SHAPES.IMAGE_SIZE", 64,
    "DATASETS.SHAPES.NUM_VAL_IMAGES", 5,
    "INPUT.MIN_SIZE_TEST", 64,
    "INPUT.MAX_SIZE_TEST", 64,
    "TEST.IMS_PER_BATCH", 2,
]


def tiny_cfg(output_dir, *opts):
    return make_cfg(*TINY_MASK_RCNN, "OUTPUT_DIR", str(output_dir), *opts)


def tiny_model(cfg, seed=0):
    """A seeded random model whose detections are its anchors (box regressions zeroed), so some
    overlap the shapes and the APs are not all zero; the class scores get a wider spread so scores
    are distinct."""
    model = seeded_model(cfg, seed)
    with torch.no_grad():
        model.roi_heads.box.predictor.cls_score.weight.normal_(0, 0.02)
    return zero_box_regression(model)


def free_port():
    """A TCP port nobody listens on now (for a gloo process group on localhost)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_same_predictions(got, want):
    """Two lists of BoxLists with the same boxes and the same fields, exactly."""
    assert len(got) == len(want)
    for index, (a, b) in enumerate(zip(got, want)):
        assert a.size == b.size, index
        torch.testing.assert_close(a.bbox, b.bbox, rtol=0, atol=0, msg="boxes of image %d" % index)
        assert sorted(a.fields()) == sorted(b.fields()), index
        for field in b.fields():
            torch.testing.assert_close(a.get_field(field), b.get_field(field), rtol=0, atol=0,
                                       msg="field %s of image %d" % (field, index))


class OracleDetector(torch.nn.Module):
    """Answers every image with its own ground truth (score 1, full-image masks), recognised by the
    bytes of its transformed tensor: a correct pipeline scores AP 1.0, and any mix-up of images
    (order, gathering, index keys) lowers it."""

    def __init__(self, dataset):
        super().__init__()
        self.answers = {}
        for index in range(len(dataset)):
            image, target, _ = dataset[index]
            prediction = BoxList(target.bbox, target.size, mode=target.mode)
            prediction.add_field("scores", torch.ones(len(target)))
            prediction.add_field("labels", target.get_field("labels"))
            masks = target.get_field("masks").get_mask_tensor().reshape(len(target), 1, *image.shape[-2:])
            prediction.add_field("mask", masks.float())
            self.answers[self.fingerprint(image)] = prediction

    @staticmethod
    def fingerprint(image):
        return hashlib.sha1(image.contiguous().numpy().tobytes()).hexdigest()

    def forward(self, images):
        answers = []
        for tensor, (height, width) in zip(images.tensors, images.image_sizes):
            answers.append(self.answers[self.fingerprint(tensor[:, :height, :width])])
        return answers
