"""Write the torchvision fixtures under tests/fixtures/ (run where torchvision is installed):

    /work/main/.venv-peer/bin/python tools/make_torchvision_fixture.py

* torchvision_detection_keys.json: key -> shape of torchvision's detection models (weights=None,
  nothing downloaded), so tests build state dicts with torchvision's names and shapes.
* torchvision_fasterrcnn_outputs.json: with `seeded_weights` loaded into fasterrcnn_resnet50_fpn
  (eval), summaries of its FPN features and RPN head outputs on `seeded_image()`. The weights are
  not stored: both sides regenerate them from the key list with the same torch version.
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


if __name__ == "__main__":
    main()
