"""Training-step speed and peak memory: Mask R-CNN R-50-FPN and the quick-start shapes model,
ours beside torchvision's same model.

    python benchmarks/train.py                                   # ours only (the .venv of `make test`)
    benchmarks/with_peer.sh benchmarks/train.py                  # + torchvision, alternating (see README)
    benchmarks/with_peer.sh benchmarks/train.py --device cuda --batch 2,4,8 --amp

Cases (--cases, comma-separated NAME@HxW; NAME is mask / faster / keypoint (R-50-FPN with
torchvision's settings, benchmarks/detection_pair.py), `shapes` (--shapes-config, the quick-start
model; its size defaults to the config's INPUT.MIN_SIZE_TRAIN) or a YAML path):
mask@800x1216 (COCO-sized), mask@512x512 (the size of the speed target of issue #8) and shapes.

Each step: forward on --batch random images with --boxes-per-image random objects (polygon masks
for ours, the same masks as bitmaps for torchvision), summed losses, backward, SGD step (the same
on both sides; model.py's train_step_function). Reported: seconds per iteration (median of
--repeats, ours and torchvision's alternating in one process), the process's CPU seconds per
iteration (steadier than wall time on a shared machine), images per second, the ratios
ours / torchvision, and peak memory (benchmarks/common.py PeakMemory: on the CPU the growth of
the resident set over one step; on CUDA torch.cuda.max_memory_allocated, weights and optimizer
state included). --amp adds rows with bf16 autocast.
"""
import argparse
import gc
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import format_mib, format_ratio, measure_alternating, parse_size, print_table, progress  # noqa: E402
from detection_pair import REPO, build_pair, detector_cfg, model_label  # noqa: E402
from model import add_common_arguments, parse_list, setup, train_functions  # noqa: E402

SHAPES_CONFIG = os.path.join(REPO, "configs", "shapes", "e2e_mask_rcnn_R_18_FPN_shapes.yaml")
DEFAULT_CASES = "mask@800x1216,mask@512x512,shapes"


def parse_case(text, shapes_config):
    """'mask@512x512' -> (model name or YAML path, (H, W) or None for the config's own size)."""
    name, _, size = text.partition("@")
    model = shapes_config if name == "shapes" else name
    return model, (parse_size(size) if size else None)


def config_size(cfg):
    """Square training size of a config: its first INPUT.MIN_SIZE_TRAIN (capped by MAX_SIZE_TRAIN)."""
    side = min(cfg.INPUT.MIN_SIZE_TRAIN[0], cfg.INPUT.MAX_SIZE_TRAIN)
    return side, side


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=DEFAULT_CASES, help=f"comma-separated NAME@HxW (default {DEFAULT_CASES})")
    parser.add_argument("--shapes-config", default=SHAPES_CONFIG, help="the YAML the `shapes` case uses")
    parser.add_argument("--batch", default=None, help="images per step, comma-separated (default: 2 on the "
                                                      "CPU, 2,4,8 on CUDA)")
    parser.add_argument("--boxes-per-image", type=int, default=8, help="ground-truth objects per image")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="config KEY VALUE pairs merged last into every case")
    add_common_arguments(parser)
    args = parser.parse_args()
    with_peer = setup(args)
    batches = parse_list(args.batch or ("2,4,8" if args.device == "cuda" else "2"), int)
    precisions = [False, True] if args.amp else [False]

    rows, notes = [], []
    for text in parse_list(args.cases):
        model, size = parse_case(text, args.shapes_config)
        if model == args.shapes_config and not os.path.isfile(model):
            notes.append(f"shapes: {model} not found, case skipped")
            continue
        cfg = detector_cfg(model, ["MODEL.DEVICE", args.device] + list(args.opts))
        size = size or config_size(cfg)
        ours, peer, note = build_pair(cfg, size, args.device, with_peer)
        label = f"{model_label(model)} {size[0]}x{size[1]}"
        notes.append(f"{label}: {note}")
        for amp in precisions:
            for batch in batches:
                functions = train_functions(ours, peer, cfg, size, batch, args.boxes_per_image, args.device, amp)
                measured = measure_alternating(functions, args.repeats, args.warmup, args.device, memory=True)
                ours_m, peer_m = measured["ours"], measured.get("peer")
                rows.append([
                    label, str(batch), "bf16" if amp else "fp32",
                    f"{ours_m.seconds:.3f}", "-" if peer_m is None else f"{peer_m.seconds:.3f}",
                    format_ratio(ours_m.seconds, peer_m and peer_m.seconds),
                    f"{ours_m.cpu_seconds:.2f}", "-" if peer_m is None else f"{peer_m.cpu_seconds:.2f}",
                    format_ratio(ours_m.cpu_seconds, peer_m and peer_m.cpu_seconds),
                    f"{batch / ours_m.seconds:.2f}", "-" if peer_m is None else f"{batch / peer_m.seconds:.2f}",
                    format_mib(ours_m.peak_bytes), "-" if peer_m is None else format_mib(peer_m.peak_bytes),
                ])
                progress(rows[-1])
                del functions, measured
                gc.collect()
        del ours, peer
        gc.collect()
        if args.device == "cuda":
            torch.cuda.empty_cache()

    print()
    print_table(["model", "images", "precision", "ours s/iter", "torchvision s/iter", "ours / tv",
                 "ours CPU s", "tv CPU s", "CPU ours / tv", "ours img/s", "tv img/s", "ours peak MiB", "tv peak MiB"], rows)
    print("\n" + "\n".join(notes))


if __name__ == "__main__":
    main()
