"""Eval forward and train step of Faster / Mask / Keypoint R-CNN R-50-FPN, ours beside torchvision's.

    python benchmarks/model.py --models mask --batch 1          # ours only (the .venv of `make test`)
    benchmarks/with_peer.sh benchmarks/model.py                  # + torchvision, alternating (see README)
    benchmarks/with_peer.sh benchmarks/model.py --device cuda --amp --batch 1,8

Models: configs/e2e_{faster,mask,keypoint}_rcnn_R_50_FPN_1x.yaml with the settings of torchvision's
`*rcnn_resnet50_fpn` (benchmarks/detection_pair.py: stride in the 3x3 conv, modern box convention,
91 classes, 2000 training proposals per image). torchvision's model is built with the same sizes
and its random weights are converted into ours, so both keep comparable detections. Both keep
every scored detection (score threshold 0) up to 100 per image: the mask / keypoint heads and the
mask pasting (inside both forwards) run on 100 boxes per image.

Eval: seconds per image at each --batch (random --size images, `torch.inference_mode`); ours with
its batch norms folded into the convolutions and its weights channels-last (TEST.FOLD_BN,
TEST.CHANNELS_LAST, as our inference entry points do).
Train: seconds per step of --train-batch images with --boxes-per-image random objects (polygon
masks for ours, the same masks as bitmaps for torchvision, as each side's COCO loader gives them;
17 keypoints each for the keypoint model): forward, summed losses, backward, SGD step.
CPU s: CPU time of the process over a run (common.Measurement), steadier than wall time on a
shared machine. Peak memory: see benchmarks/common.py PeakMemory (CPU: growth of the resident set over one run;
CUDA: torch.cuda.max_memory_allocated). Times are medians of --repeats runs, ours and torchvision's
alternating in one process after --warmup untimed runs each; the ratio is ours / torchvision.
"""
import argparse
import gc
import os
import sys

import torch

from maskrcnn.modeling.inference_setup import optimize_for_inference_from_cfg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (format_mib, format_ratio, measure_alternating, optional_import,  # noqa: E402
                    parse_size, print_table, progress)
from detection_pair import (KEEP_100_DETECTIONS, MODEL_CONFIGS, build_pair, count_detections,  # noqa: E402
                            detector_cfg, model_label, normalize_for_ours, random_images,
                            synthetic_targets, targets_for_ours, targets_for_torchvision)

torchvision = optional_import("torchvision")


def autocast(device, amp):
    """bf16 autocast on `device` when amp, else a no-op context."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=amp)


def eval_functions(ours, peer, images, cfg, device, amp):
    """Callables running one eval forward of each side on the same images (`ours` as inference
    runs it: optimize_for_inference_from_cfg, i.e. batch norms folded into the convolutions and
    channels-last weights with TEST.FOLD_BN and TEST.CHANNELS_LAST, the defaults)."""
    ours_images = normalize_for_ours(images, cfg, device)
    peer_images = [image.to(device) for image in images]

    def run(model, batch):
        with torch.inference_mode(), autocast(device, amp):
            return model(batch)

    functions = {"ours": lambda: run(ours.eval(), ours_images)}
    if peer is not None:
        functions["peer"] = lambda: run(peer.eval(), peer_images)
    return functions


def train_step_function(model, images, targets, device, amp):
    """One training step (forward, summed losses, backward, SGD step) of `model`; returns the loss."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    # a tiny learning rate: each step does the full update while the random weights stay tame
    optimizer = torch.optim.SGD(parameters, lr=1e-5, momentum=0.9, weight_decay=1e-4)

    def step():
        model.train()
        with autocast(device, amp):
            losses = model(images, targets)
        loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


def train_functions(ours, peer, cfg, image_size, batch, boxes_per_image, device, amp):
    generator = torch.Generator().manual_seed(1)
    images = random_images(batch, image_size, generator)
    targets = synthetic_targets(cfg, batch, image_size, boxes_per_image, generator)
    functions = {"ours": train_step_function(
        ours, normalize_for_ours(images, cfg, device), targets_for_ours(targets, cfg, image_size, device),
        device, amp)}
    if peer is not None:
        functions["peer"] = train_step_function(
            peer, [image.to(device) for image in images],
            targets_for_torchvision(targets, cfg, image_size, device), device, amp)
    return functions


def row(label, measurements, per, detections=None):
    """A table row: times divided by `per` (images or 1), peaks, detections per image."""
    ours, peer = measurements["ours"], measurements.get("peer")
    seconds = lambda m: None if m is None else m.seconds / per  # noqa: E731
    cpu = lambda m: None if m is None else m.cpu_seconds / per  # noqa: E731
    cells = [*label, f"{seconds(ours):.3f}", "-" if peer is None else f"{seconds(peer):.3f}",
             format_ratio(seconds(ours), seconds(peer)),
             f"{cpu(ours):.2f}", "-" if peer is None else f"{cpu(peer):.2f}", format_ratio(cpu(ours), cpu(peer)),
             format_mib(ours.peak_bytes), "-" if peer is None else format_mib(peer.peak_bytes)]
    if detections is not None:
        cells.append("/".join(f"{count_detections(m.result):.0f}" for m in (ours, peer) if m is not None))
    else:
        cells.append("-")
    return cells


def parse_list(text, cast=str):
    return [cast(v) for v in text.split(",") if v]


def add_common_arguments(parser, default_threads=2):
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per case (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per side before timing")
    parser.add_argument("--threads", type=int, default=default_threads, help="torch CPU threads (default 2)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--amp", action="store_true", help="also run with bf16 autocast")
    parser.add_argument("--no-peer", action="store_true", help="ours only, even where torchvision imports")


def setup(args):
    """Threads, device check, the header line; returns whether torchvision runs beside us."""
    torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    with_peer = torchvision is not None and not args.no_peer
    peer = f"torchvision {torchvision.__version__}" if with_peer else (
        "none (--no-peer)" if args.no_peer else "torchvision not importable: ours alone")
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"cpu, {args.threads} threads"
    print(f"torch {torch.__version__}, {where}, median of {args.repeats} (after {args.warmup} warm-up); "
          f"peer: {peer}")
    return with_peer


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="faster,mask,keypoint",
                        help=f"comma-separated: {','.join(MODEL_CONFIGS)} or YAML paths")
    parser.add_argument("--batch", default="1,8", help="eval batch sizes (comma-separated)")
    parser.add_argument("--train-batch", type=int, default=2, help="images per train step (0: skip training)")
    parser.add_argument("--boxes-per-image", type=int, default=8, help="ground-truth objects per training image")
    parser.add_argument("--size", default="800x1216", help="image HxW (default 800x1216)")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="config KEY VALUE pairs merged last (e.g. to shrink the model in smoke tests)")
    add_common_arguments(parser)
    args = parser.parse_args()
    image_size = parse_size(args.size)
    with_peer = setup(args)
    precisions = [False, True] if args.amp else [False]

    rows, notes = [], []
    for model in parse_list(args.models):
        cfg = detector_cfg(model, KEEP_100_DETECTIONS + ["MODEL.DEVICE", args.device] + list(args.opts))
        ours, peer, note = build_pair(cfg, image_size, args.device, with_peer)
        notes.append(f"{model_label(model)}: {note}")
        ours_inference = optimize_for_inference_from_cfg(cfg, ours)
        for amp in precisions:
            precision = "bf16" if amp else "fp32"
            for batch in parse_list(args.batch, int):
                images = random_images(batch, image_size, torch.Generator().manual_seed(batch))
                measured = measure_alternating(eval_functions(ours_inference, peer, images, cfg, args.device, amp),
                                               args.repeats, args.warmup, args.device, memory=True)
                rows.append(row([model_label(model), f"eval b{batch}", precision], measured, batch, True))
                progress(rows[-1])
                del measured
                gc.collect()
            if args.train_batch > 0:
                functions = train_functions(ours, peer, cfg, image_size, args.train_batch,
                                            args.boxes_per_image, args.device, amp)
                measured = measure_alternating(functions, args.repeats, args.warmup, args.device, memory=True)
                rows.append(row([model_label(model), f"train b{args.train_batch}", precision], measured, 1))
                progress(rows[-1])
                del functions, measured
                gc.collect()
        del ours, ours_inference, peer
        gc.collect()
        if args.device == "cuda":
            torch.cuda.empty_cache()

    print(f"input {args.size}; eval: s per image; train: s per step\n")
    print_table(["model", "case", "precision", "ours s", "torchvision s", "ours / tv", "ours CPU s",
                 "tv CPU s", "CPU ours / tv", "ours peak MiB", "tv peak MiB", "detections ours/tv"], rows)
    print("\n" + "\n".join(notes))


if __name__ == "__main__":
    main()
