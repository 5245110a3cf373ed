"""Deployment export of a GeneralizedRCNN: ``torch.export`` programs and ONNX models.

``ExportableDetector`` wraps a two-stage detector (Faster / Mask R-CNN) so that it takes and returns
plain tensors, one image at a time:

* input ``image``: Tensor[1, 3, H, W] float32, the image already preprocessed as the config's test
  transforms do (``maskrcnn.data.transforms.build_transforms(cfg, is_train=False)``): resized so that
  the shorter side is INPUT.MIN_SIZE_TEST (longer side at most INPUT.MAX_SIZE_TEST), channels in BGR
  order scaled to [0, 255] when INPUT.TO_BGR255 (else RGB in [0, 1]), minus INPUT.PIXEL_MEAN, divided
  by INPUT.PIXEL_STD, then zero-padded at the bottom and right to a multiple of
  DATALOADER.SIZE_DIVISIBILITY (as ``to_image_list`` does). H and W are dynamic but must be such
  multiples (the padding is the caller's: inside the graph it would turn the FPN's size arithmetic
  into modular expressions torch.export cannot reason about). Boxes are clipped to the padded
  H x W: clip them to the unpadded image afterwards, as the eager model given this padded tensor
  does the same.
* outputs (detections by decreasing score, N of them, N data-dependent):
  ``boxes`` Tensor[N, 4] float32 (x1, y1, x2, y2) in the input's pixels (divide by the resize
  factor for the original image), ``scores`` Tensor[N] float32, ``labels`` Tensor[N] int64
  (1 .. NUM_CLASSES - 1), and for Mask R-CNN ``masks`` Tensor[N, 1, M, M] float32, the mask
  probabilities of each box's class on the M x M grid of its box. Pasting them into the image
  (``maskrcnn.modeling.roi_heads.mask_head.inference.Masker``) is left to the caller.

``export_program`` runs ``torch.export.export`` with a dynamic height and width, and
``export_onnx`` converts the program with ``torch.onnx.export(..., dynamo=True)`` using the ONNX
translations of our ops (``maskrcnn.layers.onnx_translations``). ``fold_batch_norms_for_export``
folds the batch norms into the convolutions first (TEST.FOLD_BN; tools/export.py does it).
"""
import torch
from torch import nn

from maskrcnn.structures.image_list import ImageList

__all__ = [
    "ExportableDetector",
    "check_exportable",
    "output_names",
    "fold_batch_norms_for_export",
    "export_program",
    "export_onnx",
    "ONNX_OPSET",
]

# RoiAlign with coordinate_transformation_mode needs opset 16; 18 is onnxscript's default set.
ONNX_OPSET = 18


def check_exportable(model):
    """Raise ValueError unless ``model`` is a detector ExportableDetector supports: a GeneralizedRCNN
    with RoI heads (box head, optional mask head), neither RetinaNet, RPN-only, keypoints nor
    test-time augmentation."""
    roi_heads = getattr(model, "roi_heads", None)
    if not roi_heads or "box" not in roi_heads:
        raise ValueError(
            "export: only Faster / Mask R-CNN (GeneralizedRCNN with RoI heads) are supported; "
            "RetinaNet and RPN-only models (MODEL.RETINANET_ON, MODEL.RPN_ONLY) are not"
        )
    if "keypoint" in roi_heads:
        raise ValueError("export: keypoint heads (MODEL.KEYPOINT_ON) are not supported")
    if getattr(roi_heads.box.post_processor, "bbox_aug_enabled", False):
        raise ValueError("export: the box post-processor is in test-time-augmentation mode (bbox_aug_enabled: "
                         "unfiltered (RoI, class) boxes); TTA is not exported")
    if "mask" in roi_heads and roi_heads.mask.post_processor.masker is not None:
        raise ValueError(
            "export: set MODEL.ROI_MASK_HEAD.POSTPROCESS_MASKS False (the exported model returns the "
            "M x M mask probabilities; paste them with Masker outside the graph)"
        )


def output_names(model):
    """The names of ExportableDetector(model)'s outputs, in order."""
    names = ["boxes", "scores", "labels"]
    if "mask" in model.roi_heads:
        names.append("masks")
    return names


class ExportableDetector(nn.Module):
    """A GeneralizedRCNN (in eval mode) seen as image tensor -> detection tensors (module doc).

    Arguments:
        model: GeneralizedRCNN with RoI heads (check_exportable).
        size_divisibility (int): H and W must be multiples of it (the model's
            DATALOADER.SIZE_DIVISIBILITY by default).
    forward(image Tensor[1, 3, H, W]) -> (boxes [N, 4], scores [N], labels [N] int64[, masks [N, 1, M, M]]),
    the same values as ``model(image)[0]``'s bbox and fields.
    """

    def __init__(self, model, size_divisibility=None):
        super().__init__()
        check_exportable(model)
        self.model = model
        if size_divisibility is None:
            size_divisibility = getattr(model, "size_divisibility", 0)
        self.size_divisibility = int(size_divisibility)
        self.with_masks = "mask" in model.roi_heads

    def forward(self, image):
        torch._check(image.dim() == 4 and image.shape[0] == 1,
                     lambda: f"ExportableDetector: image must be [1, 3, H, W], got {list(image.shape)}")
        height, width = image.shape[-2:]
        divisor = self.size_divisibility
        if divisor > 0 and not isinstance(height, torch.SymInt) and (height % divisor or width % divisor):
            raise ValueError(
                f"ExportableDetector: image height and width must be multiples of {divisor} "
                f"(DATALOADER.SIZE_DIVISIBILITY; pad the image at the bottom and right), got {height} x {width}"
            )
        detections = self.model(ImageList(image, [(height, width)]))[0]
        outputs = (detections.bbox, detections.get_field("scores"), detections.get_field("labels"))
        if self.with_masks:
            outputs = outputs + (detections.get_field("mask"),)
        return outputs


def fold_batch_norms_for_export(cfg, model):
    """``model`` with its batch norms folded into the convolutions when TEST.FOLD_BN (in place;
    ``maskrcnn.modeling.fold_batch_norm``): fewer nodes in the exported graph and less work."""
    from maskrcnn.modeling.fold_batch_norm import fold_batch_norms_from_cfg

    return fold_batch_norms_from_cfg(cfg, model, inplace=True)


def _dynamic_image_shapes(divisor, min_size, max_size):
    """Height and width: any multiple of ``divisor`` (1 = any size) in [min_size, max_size]."""
    divisor = max(int(divisor), 1)
    low, high = -(-min_size // divisor), max_size // divisor
    if low > high:
        raise ValueError(f"export_program: no multiple of {divisor} in [{min_size}, {max_size}]")
    sizes = {}
    for axis, name in ((2, "height"), (3, "width")):
        dim = torch.export.Dim(name if divisor == 1 else f"{name}_div_{divisor}", min=low, max=high)
        sizes[axis] = dim if divisor == 1 else divisor * dim
    return {"image": sizes}


def export_program(detector, example_image, min_size=128, max_size=4096):
    """torch.export an ExportableDetector with a dynamic image height and width.

    Arguments:
        detector (ExportableDetector): in eval mode.
        example_image: Tensor[1, 3, H, W] traced through (H, W multiples of the detector's
            size_divisibility in [min_size, max_size]).
        min_size, max_size (int): the range of H and W the program accepts. The smallest must
            leave every FPN level (stride up to 64) at least 2 cells wide: 128 by default.
    Returns:
        torch.export.ExportedProgram (save it with torch.export.save).
    """
    if not (isinstance(example_image, torch.Tensor) and example_image.dim() == 4 and example_image.shape[0] == 1):
        raise ValueError(f"export_program: example_image must be a Tensor[1, 3, H, W], got {example_image!r:.80}")
    divisor = max(detector.size_divisibility, 1)
    for name, size in zip(("height", "width"), example_image.shape[-2:]):
        if not min_size <= size <= max_size:
            raise ValueError(f"export_program: example image {name} {size} is outside [{min_size}, {max_size}]")
        if size % divisor:
            raise ValueError(
                f"export_program: example image {name} {size} is not a multiple of {divisor} "
                "(DATALOADER.SIZE_DIVISIBILITY)"
            )
    detector.eval()
    dynamic_shapes = _dynamic_image_shapes(divisor, min_size, max_size)
    with torch.no_grad():
        return torch.export.export(detector, (example_image,), dynamic_shapes=dynamic_shapes, strict=False)


def export_onnx(program, path, names=("boxes", "scores", "labels"), opset_version=ONNX_OPSET, optimize=True):
    """Convert an ExportedProgram of ExportableDetector to ONNX at ``path``.

    The compiled ops become standard ONNX operators (NonMaxSuppression, RoiAlign) through
    ``onnx_translation_table``; the input is named "image" and the outputs ``names``. ``optimize``
    runs onnxscript's graph optimizer (constant folding, rewrites; slow on large graphs, and
    onnxruntime optimizes the graph itself when it loads it).
    Returns the torch.onnx.ONNXProgram.
    """
    from maskrcnn.layers.onnx_translations import onnx_translation_table

    onnx_program = torch.onnx.export(
        program,
        dynamo=True,
        custom_translation_table=onnx_translation_table(),
        input_names=["image"],
        output_names=list(names),
        opset_version=opset_version,
        optimize=optimize,
        verbose=False,
    )
    onnx_program.save(str(path))
    return onnx_program
