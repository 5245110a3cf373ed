"""Write the torchvision fixtures under tests/fixtures/ (run where torchvision is installed):

    /work/main/.venv-peer/bin/python tools/make_torchvision_fixture.py

* torchvision_detection_keys.json: key -> shape of torchvision's detection models (weights=None,
  nothing downloaded), so tests build state dicts with torchvision's names and shapes.
* torchvision_fasterrcnn_outputs.json: with `seeded_weights` loaded into fasterrcnn_resnet50_fpn
  (eval), summaries of its FPN features and RPN head outputs on `seeded_image()`.
* torchvision_<model>_detections.json, for Faster / Mask / Keypoint R-CNN R-50-FPN: with
  `detection_weights` loaded (eval), the detections on `detection_image()` fed past the model's
  transform (no resize, no normalisation: backbone, RPN and RoI heads see that tensor as one
  320 x 416 image): boxes, scores, labels, and the 28 x 28 mask probabilities (per-detection sums
  and a 7 x 7 average-pooled copy) or the keypoints (x, y, visibility) and their scores.
  The torchvision keyword arguments in DETECTION_MODELS (smaller top-N for the heavy heads, to keep
  the test fast) are stored with the outputs; the test sets the matching config keys.
The weights are not stored: both sides regenerate them from the key list with the same torch
version.
The library never imports torchvision; only this script does.
"""
import argparse
import json
import os

MODELS = (
    "fasterrcnn_resnet50_fpn",
    "maskrcnn_resnet50_fpn",
    "keypointrcnn_resnet50_fpn",
    "retinanet_resnet50_fpn",
)


def seeded_weights(entries):
    """Deterministic, numerically tame weights for a [(key, shape)] list (torch only).

    Conv / linear weights ~ N(0, 2 / fan_in); batch-norm weight ~ 1 + 0.1 N, bias and
    running_mean ~ 0.1 N, running_var ~ U(0.5, 1.5); biases ~ 0.1 N. Entry i uses seed i.
    """
    import torch

    out = {}
    for i, (key, shape) in enumerate(entries):
        g = torch.Generator().manual_seed(i)
        leaf = key.rsplit(".", 1)[1]
        if leaf == "num_batches_tracked":
            out[key] = torch.tensor(0)
            continue
        noise = torch.randn(tuple(shape), generator=g)
        if leaf == "running_var":
            out[key] = torch.rand(tuple(shape), generator=g) + 0.5
        elif leaf == "weight" and len(shape) > 1:
            fan_in = 1
            for d in shape[1:]:
                fan_in *= d
            out[key] = noise * (2.0 / fan_in) ** 0.5
        elif leaf == "weight":  # batch-norm scale
            out[key] = 1.0 + 0.1 * noise
        else:
            out[key] = 0.1 * noise
    return out


def detection_weights(entries):
    """`seeded_weights`, tamed so that a full detector gives spread-out, finite outputs.

    The residual branches' last batch norm (bn3 weight and bias) is scaled by 0.2 so activations do
    not grow block after block, the FPN output convolutions by 0.07 (features of unit scale), and
    the RPN box regression by 0.3 (proposals near their anchors rather than slivers).
    """
    out = seeded_weights(entries)
    for key in out:
        if key.endswith((".bn3.weight", ".bn3.bias")):
            out[key] = out[key] * 0.2
        elif key.startswith("backbone.fpn.layer_blocks.") and key.endswith(".weight"):
            out[key] = out[key] * 0.07
        elif key == "rpn.head.bbox_pred.weight":
            out[key] = out[key] * 0.3
    return out


# torchvision builder -> keyword arguments of the fixture run (the test maps them to config keys)
DETECTION_MODELS = {
    "fasterrcnn_resnet50_fpn": {},
    "maskrcnn_resnet50_fpn": {"rpn_pre_nms_top_n_test": 300, "rpn_post_nms_top_n_test": 300,
                              "box_detections_per_img": 10},
    "keypointrcnn_resnet50_fpn": {"rpn_pre_nms_top_n_test": 300, "rpn_post_nms_top_n_test": 300,
                                  "box_detections_per_img": 6},
}
DETECTION_IMAGE_SHAPE = (1, 3, 320, 416)


def detection_image():
    import torch

    return torch.randn(DETECTION_IMAGE_SHAPE, generator=torch.Generator().manual_seed(4321))


def _rounded(values, digits=7):
    return [float(f"{v:.{digits}g}") for v in values]


def mask_summary(masks):
    """masks: Tensor[N, 1, M, M] probabilities -> {"sum": [N], "pooled": [N * 7 * 7]} (M / 7 cells)."""
    import torch

    pooled = torch.nn.functional.avg_pool2d(masks, masks.shape[-1] // 7)
    return {"sum": _rounded(masks.sum(dim=(1, 2, 3)).tolist()), "pooled": _rounded(pooled.reshape(-1).tolist())}


def seeded_image():
    import torch

    return torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1234))


# Fixed positions sampled from each output (flattened), the same on both sides.
SAMPLES = 32


def summarize(tensor):
    """Tensor[1, C, H, W] -> dict of per-channel means and SAMPLES values at fixed flat positions."""
    import torch

    flat = tensor.reshape(-1)
    idx = torch.linspace(0, flat.numel() - 1, SAMPLES).round().long()
    return {
        "shape": list(tensor.shape),
        "channel_mean": tensor.mean(dim=(0, 2, 3)).tolist(),
        "samples": flat[idx].tolist(),
    }


def _outputs(detection, keys):
    import torch

    model = detection.fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).eval()
    model.load_state_dict(seeded_weights(keys))
    with torch.no_grad():
        feats = list(model.backbone(seeded_image()).values())
        objectness, deltas = model.rpn.head(feats)
    return {
        "features": [summarize(f) for f in feats],
        "objectness": [summarize(o) for o in objectness],
        "rpn_box_regression": [summarize(d) for d in deltas],
    }


def _detections(detection, name, keys):
    import torch
    from torchvision.models.detection.image_list import ImageList

    kwargs = DETECTION_MODELS[name]
    model = getattr(detection, name)(weights=None, weights_backbone=None, **kwargs).eval()
    model.load_state_dict(detection_weights(keys))
    image = detection_image()
    images = ImageList(image, [tuple(image.shape[-2:])])
    with torch.no_grad():
        features = model.backbone(image)
        proposals, _ = model.rpn(images, features)
        result = model.roi_heads(features, proposals, images.image_sizes)[0][0]
    out = {
        "kwargs": kwargs,
        "image_shape": list(DETECTION_IMAGE_SHAPE),
        "boxes": result["boxes"].tolist(),
        "scores": result["scores"].tolist(),
        "labels": result["labels"].tolist(),
    }
    if "masks" in result:
        out["masks"] = mask_summary(result["masks"])
    if "keypoints" in result:
        out["keypoints"] = [_rounded(row) for row in result["keypoints"].reshape(-1, 3).tolist()]
        out["keypoints_scores"] = _rounded(result["keypoints_scores"].reshape(-1).tolist())
    return out


def main():
    import torchvision
    from torchvision.models import detection

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures"))
    parser.add_argument("--output-dir", default=default)
    args = parser.parse_args()
    out = {"torchvision_version": torchvision.__version__, "models": {}}
    for name in MODELS:
        model = getattr(detection, name)(weights=None, weights_backbone=None)
        out["models"][name] = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    keys_path = os.path.join(args.output_dir, "torchvision_detection_keys.json")
    with open(keys_path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {keys_path}: " + ", ".join(f"{n} ({len(v)} keys)" for n, v in out["models"].items()))
    outputs = {"torchvision_version": torchvision.__version__,
               **_outputs(detection, out["models"]["fasterrcnn_resnet50_fpn"])}
    outputs_path = os.path.join(args.output_dir, "torchvision_fasterrcnn_outputs.json")
    with open(outputs_path, "w") as f:
        json.dump(outputs, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {outputs_path}")
    for name in DETECTION_MODELS:
        result = {"torchvision_version": torchvision.__version__,
                  **_detections(detection, name, out["models"][name])}
        path = os.path.join(args.output_dir, f"torchvision_{name}_detections.json")
        with open(path, "w") as f:
            json.dump(result, f, separators=(",", ":"))
            f.write("\n")
        print(f"wrote {path}: {len(result['boxes'])} detections")


if __name__ == "__main__":
    main()
