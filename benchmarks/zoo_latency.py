"""CPU seconds per image of every config under configs/ at its test size (MODEL_ZOO.md's table).

    python benchmarks/zoo_latency.py                                  # every configs/**/*.yaml
    python benchmarks/zoo_latency.py --configs 'configs/retinanet/*.yaml' --repeats 3
    python benchmarks/zoo_latency.py --markdown /tmp/zoo_latency.md   # also write the tables

For each YAML: the model is built with random weights (MODEL.WEIGHT "": nothing is loaded or
downloaded; MODEL.DEVICE cpu, seeded), made inference-only as our Predictor does
(`optimize_for_inference_from_cfg`: TEST.FOLD_BN, TEST.CHANNELS_LAST) and run on one random image
under `torch.inference_mode`. The image is what the config's test transforms
(`build_transforms(cfg, is_train=False)`: Resize(INPUT.MIN_SIZE_TEST, INPUT.MAX_SIZE_TEST),
ToTensor, Normalize) make of a --aspect (default 4:3) landscape photo, padded as
DATALOADER.SIZE_DIVISIBILITY says (`to_image_list`): 800x1066 (padded 800x1088) for 800/1333.
One untimed warm-up forward at --warmup-size (shorter side), then --repeats timed forwards (median).

Columns: wall seconds and process CPU seconds (all threads; steadier than wall time on a shared
machine) per image, detections returned (random weights give anything from 0 to the cap; RPN-only
models return proposals), the network's input size (and padded size), and the parameter count of
the model as built (before BN folding). A config that fails to build or run is a row with the
error; nothing is skipped. Configs with TEST.BBOX_AUG.ENABLED are timed on the plain view only, with
it turned off (their test-time augmentation runs one forward per view; the note says how many).
"""
import argparse
import gc
import glob
import os
import platform
import shlex
import statistics
import sys
import time

import numpy as np
import torch

from maskrcnn.config import cfg as default_cfg
from maskrcnn.data.transforms import build_transforms
from maskrcnn.engine.bbox_aug import bbox_aug_views
from maskrcnn.modeling.detector import build_detection_model
from maskrcnn.modeling.inference_setup import optimize_for_inference_from_cfg
from maskrcnn.structures.image_list import to_image_list

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import progress  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_GLOB = os.path.join(REPO, "configs", "**", "*.yaml")
HEADERS = ["config", "wall s/img", "CPU s/img", "detections", "input HxW (padded)", "params (M)", "note"]


def find_configs(patterns):
    """Sorted unique YAML paths matched by the glob `patterns` (recursive '**' allowed)."""
    paths = sorted({os.path.abspath(p) for pattern in patterns for p in glob.glob(pattern, recursive=True)})
    if not paths:
        raise SystemExit(f"--configs: no file matches {patterns}")
    return paths


def folder_of(path):
    """The folder of a config relative to the repository (e.g. 'configs/retinanet')."""
    folder = os.path.dirname(path)
    return os.path.relpath(folder, REPO) if folder.startswith(REPO + os.sep) else folder


def load_cfg(path, device="cpu"):
    """The config of `path` with random weights on `device` (nothing to load or download)."""
    cfg = default_cfg.clone()
    cfg.merge_from_file(path)
    cfg.merge_from_list(["MODEL.WEIGHT", "", "MODEL.DEVICE", device])
    cfg.freeze()
    return cfg


def parse_aspect(text):
    """'4:3' -> (4, 3) (width, height)."""
    try:
        width, height = (int(v) for v in text.split(":"))
        if width <= 0 or height <= 0:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"--aspect must be W:H with positive integers, got {text!r}") from None
    return width, height


def random_photo(aspect, long_side=640, seed=0):
    """A random BGR uint8 image [H, W, 3] of `aspect` (width, height), its longer side `long_side`."""
    width, height = aspect
    scale = long_side / max(width, height)
    size = (max(1, round(height * scale)), max(1, round(width * scale)), 3)
    return np.random.default_rng(seed).integers(0, 256, size=size, dtype=np.uint8)


def test_input(cfg, photo):
    """`photo` through the config's test transforms, as a padded ImageList of one image."""
    image, _ = build_transforms(cfg, is_train=False)(photo)
    return to_image_list(image, cfg.DATALOADER.SIZE_DIVISIBILITY)


def warmup_input(cfg, photo, shorter_side):
    """`photo` resized to `shorter_side` (no larger than the test size), normalised and padded as the test input."""
    small = cfg.clone()
    small.defrost()
    test_min = min(np.atleast_1d(cfg.INPUT.MIN_SIZE_TEST))
    small.INPUT.MIN_SIZE_TEST = int(min(shorter_side, test_min))
    if cfg.INPUT.MAX_SIZE_TEST:  # the longer side capped in the test size's proportion
        small.INPUT.MAX_SIZE_TEST = int(round(small.INPUT.MIN_SIZE_TEST * cfg.INPUT.MAX_SIZE_TEST / test_min))
    return test_input(small, photo)


def count_detections(output):
    return len(output[0])


def format_error(error, limit=200):
    text = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
    text = text.replace("|", "/")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def measure_config(path, args, photo):
    """One table row (list of cells) for the config at `path`; errors become the note."""
    name = os.path.splitext(os.path.basename(path))[0]
    row = {"config": name, "wall": "-", "cpu": "-", "detections": "-", "size": "-", "params": "-", "note": ""}
    model = None
    try:
        cfg = load_cfg(path)
        images = test_input(cfg, photo)
        (height, width), padded = images.image_sizes[0], tuple(images.tensors.shape[-2:])
        row["size"] = f"{height}x{width}" + ("" if padded == (height, width) else f" ({padded[0]}x{padded[1]})")
        notes = []
        if cfg.TEST.BBOX_AUG.ENABLED:
            # with it on, the box post-processor keeps every class's candidates for the TTA merge
            # (the mask head would then run on ~80k boxes): time the plain view as a model without TTA
            notes.append(f"TEST.BBOX_AUG: plain view timed with it off; TTA runs {len(bbox_aug_views(cfg))} views")
            cfg = cfg.clone()
            cfg.defrost()
            cfg.TEST.BBOX_AUG.ENABLED = False
            cfg.freeze()
        torch.manual_seed(args.seed)
        model = build_detection_model(cfg)
        row["params"] = f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}"
        model = optimize_for_inference_from_cfg(cfg, model, inplace=True)
        warmup = warmup_input(cfg, photo, args.warmup_size)
        with torch.inference_mode():
            model(warmup)
            wall, cpu = [], []
            for _ in range(args.repeats):
                start, cpu_start = time.perf_counter(), time.process_time()
                output = model(images)
                wall.append(time.perf_counter() - start)
                cpu.append(time.process_time() - cpu_start)
        row.update(wall=f"{statistics.median(wall):.2f}", cpu=f"{statistics.median(cpu):.2f}",
                   detections=str(count_detections(output)))
        row["note"] = "; ".join(notes)
    except Exception as error:  # noqa: BLE001 - every failure is reported in the table
        row["note"] = "error: " + format_error(error)
    finally:
        del model
        gc.collect()
    return [row[key] for key in ("config", "wall", "cpu", "detections", "size", "params", "note")]


def header_lines(args, command):
    load = os.getloadavg()
    return [
        f"torch {torch.__version__}, CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores), "
        f"{args.threads} torch threads; random weights, BN folded / channels-last as the config says; "
        f"median of {args.repeats} timed forward(s) after 1 warm-up at shorter side {args.warmup_size}; "
        f"input: a {args.aspect[0]}:{args.aspect[1]} image through the config's test transforms.",
        f"Load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}.",
        f"Command: `{command}`",
    ]


def render(groups, intro, outro=()):
    """Markdown text: `intro` lines, then one table per folder (groups: {folder: rows})."""
    lines = list(intro)
    for folder, rows in groups.items():
        lines += ["", f"### {folder}", ""]
        lines += table_lines(rows)
    lines += [""] + list(outro)
    return "\n".join(lines).rstrip() + "\n"


def table_lines(rows):
    widths = [max(len(str(cell)) for cell in column) for column in zip(HEADERS, *rows)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return [line(HEADERS), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in rows]


def write_markdown(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=[DEFAULT_GLOB],
                        help="glob(s) of YAML files ('**' recursive); default: every configs/**/*.yaml")
    parser.add_argument("--repeats", type=int, default=1, help="timed forwards per config (median reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--warmup-size", type=int, default=320, help="shorter side of the untimed warm-up image")
    parser.add_argument("--aspect", type=parse_aspect, default=(4, 3), help="W:H of the timed image (default 4:3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--markdown", help="also write the tables to this file (rewritten after each config)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    torch.set_num_threads(args.threads)
    command = " ".join(shlex.quote(a) for a in ["python", os.path.relpath(__file__, REPO)]
                       + list(sys.argv[1:] if argv is None else argv))

    paths = find_configs(args.configs)
    photo = random_photo(args.aspect)
    intro = header_lines(args, command)
    groups = {}
    for number, path in enumerate(paths, 1):
        cells = measure_config(path, args, photo)
        groups.setdefault(folder_of(path), []).append(cells)
        progress([f"{number}/{len(paths)}", folder_of(path)] + cells)
        if args.markdown:
            write_markdown(args.markdown, render(groups, intro, [f"(in progress: {number} of {len(paths)} configs)"]))

    load = os.getloadavg()
    outro = [f"Load average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {len(paths)} configs."]
    text = render(groups, intro, outro)
    print(text, end="")
    if args.markdown:
        write_markdown(args.markdown, text)


if __name__ == "__main__":
    main()
