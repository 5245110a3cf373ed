"""Write tests/fixtures/torchvision_detection_keys.json: key -> shape of torchvision's detection models.

Run with an environment that has torchvision (no download: weights=None):
    /work/main/.venv-peer/bin/python tools/make_torchvision_fixture.py
The library never imports torchvision; tests use this file to build state dicts with torchvision's
key names and shapes.
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


def main():
    import torchvision
    from torchvision.models import detection

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures",
                           "torchvision_detection_keys.json")
    parser.add_argument("--output", default=os.path.normpath(default))
    args = parser.parse_args()
    out = {"torchvision_version": torchvision.__version__, "models": {}}
    for name in MODELS:
        model = getattr(detection, name)(weights=None, weights_backbone=None)
        out["models"][name] = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    with open(args.output, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {args.output}: " + ", ".join(f"{n} ({len(v)} keys)" for n, v in out["models"].items()))


if __name__ == "__main__":
    main()
