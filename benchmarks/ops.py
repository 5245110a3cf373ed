"""Median times of maskrcnn's compiled ops at detection sizes, beside torchvision's where it imports.

    python benchmarks/ops.py                       # ours only (the .venv of `make test`)
    .venv-peer/bin/python benchmarks/ops.py        # ours and torchvision's, alternating ('make bench-env')

Cases: NMS on 1k / 5k / 20k boxes (IoU 0.5); RoIAlign forward and forward+backward with 512 and
2000 RoIs over a 1x256x200x304 map (7x7, scale 1/4, sampling ratio 2); RoIPool forward+backward
with 512 RoIs; sigmoid focal loss 100k x 80 forward and forward+backward. The same inputs go to both
implementations; NMS uses the modern box convention on both sides so that the work is identical.
CUDA rows are added when a GPU is present.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import format_ms, optional_import, print_table, time_alternating  # noqa: E402

from maskrcnn import layers  # noqa: E402

torchvision_ops = optional_import("torchvision.ops")

IMAGE_W, IMAGE_H = 1216, 800


def detection_boxes(count, generator, device):
    """Boxes: Tensor[count, 4] (x1, y1, x2, y2) with centres over an 800x1216 image, sides 16..256."""
    centres = torch.rand(count, 2, generator=generator) * torch.tensor([IMAGE_W, IMAGE_H])
    sizes = 16 + torch.rand(count, 2, generator=generator) * 240
    boxes = torch.cat([centres - sizes / 2, centres + sizes / 2], dim=1)
    return boxes.to(device)


def nms_case(count, device):
    generator = torch.Generator().manual_seed(count)
    boxes = detection_boxes(count, generator, device)
    scores = torch.rand(count, generator=generator).to(device)
    ours = lambda: layers.nms(boxes, scores, 0.5, legacy_plus_one=False)  # noqa: E731
    peer = (lambda: torchvision_ops.nms(boxes, scores, 0.5)) if torchvision_ops else None  # noqa: E731
    return f"nms {count} boxes", ours, peer


def roi_case(op_name, num_rois, backward, device, channels_last=False):
    """channels_last: the features stored NHWC, as a channels-last model's FPN gives them (the same
    tensor for both sides; torchvision's kernels copy it to NCHW, ours read it as it is)."""
    generator = torch.Generator().manual_seed(num_rois)
    features = torch.randn(1, 256, 200, 304, generator=generator).to(device)
    if channels_last:
        features = features.contiguous(memory_format=torch.channels_last)
    boxes = detection_boxes(num_rois, generator, device).clamp(min=0)
    rois = torch.cat([torch.zeros(num_rois, 1, device=device), boxes], dim=1)
    features.requires_grad_(backward)
    grad_out = torch.randn(num_rois, 256, 7, 7, generator=generator).to(device)

    if op_name == "roi_align":
        ours_op = lambda: layers.roi_align(features, rois, (7, 7), 0.25, 2, False)  # noqa: E731
        peer_op = lambda: torchvision_ops.roi_align(features, rois, (7, 7), 0.25, 2, False)  # noqa: E731
    else:
        ours_op = lambda: layers.roi_pool(features, rois, (7, 7), 0.25)  # noqa: E731
        peer_op = lambda: torchvision_ops.roi_pool(features, rois, (7, 7), 0.25)  # noqa: E731

    def run(op):
        out = op()
        if backward:
            features.grad = None
            out.backward(grad_out)

    layout = " channels-last" if channels_last else ""
    label = f"{op_name} {num_rois} rois{layout} {'fwd+bwd' if backward else 'fwd'}"
    return label, (lambda: run(ours_op)), ((lambda: run(peer_op)) if torchvision_ops else None)


def focal_case(backward, device):
    generator = torch.Generator().manual_seed(0)
    num, classes = 100_000, 80
    logits = torch.randn(num, classes, generator=generator).to(device).requires_grad_(backward)
    labels = torch.randint(0, classes + 1, (num,), generator=generator).to(device)
    one_hot = torch.zeros(num, classes + 1, device=device).scatter_(1, labels[:, None], 1)[:, 1:]

    def run(loss_fn):
        loss = loss_fn()
        if backward:
            logits.grad = None
            loss.backward()

    ours = lambda: run(lambda: layers.sigmoid_focal_loss(logits, labels, 2.0, 0.25))  # noqa: E731
    peer = None
    if torchvision_ops:
        peer = lambda: run(  # noqa: E731
            lambda: torchvision_ops.sigmoid_focal_loss(logits, one_hot, alpha=0.25, gamma=2.0, reduction="sum")
        )
    return f"focal loss 100k x 80 {'fwd+bwd' if backward else 'fwd'}", ours, peer


def build_cases(device, selected):
    cases = []
    if "nms" in selected:
        cases += [nms_case(n, device) for n in (1000, 5000, 20000)]
    if "roi_align" in selected:
        cases += [roi_case("roi_align", k, bwd, device) for k in (512, 2000) for bwd in (False, True)]
        cases += [roi_case("roi_align", 512, bwd, device, channels_last=True) for bwd in (False, True)]
    if "roi_pool" in selected:
        cases += [roi_case("roi_pool", 512, True, device)]
    if "focal" in selected:
        cases += [focal_case(bwd, device) for bwd in (False, True)]
    return cases


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", default="nms,roi_align,roi_pool,focal", help="comma-separated subset")
    parser.add_argument("--repeats", type=int, default=9, help="timed runs per case (median reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--devices", default="cpu,cuda", help="devices to run on, where available")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    selected = set(args.ops.split(","))

    devices = [d for d in args.devices.split(",") if d == "cpu" or (d == "cuda" and torch.cuda.is_available())]
    peer_name = "torchvision " + __import__("torchvision").__version__ if torchvision_ops else "torchvision (not importable)"
    print(f"torch {torch.__version__}, {args.threads} CPU threads, median of {args.repeats}; peer: {peer_name}\n")
    rows = []
    for device in devices:
        for label, ours, peer in build_cases(device, selected):
            functions = {"ours": ours}
            if peer is not None:
                functions["peer"] = peer
            times = time_alternating(functions, args.repeats, device=device)
            peer_time = times.get("peer")
            ratio = f"{times['ours'] / peer_time:.2f}" if peer_time else "-"
            rows.append([device, label, format_ms(times["ours"]), format_ms(peer_time), ratio])
    print_table(["device", "case", "maskrcnn ms", "torchvision ms", "ours / torchvision"], rows)


if __name__ == "__main__":
    main()
