#!/usr/bin/env python
"""`make train`: train a Mask R-CNN on the embedded shapes data, evaluate it, draw the results.

    python tools/train_shapes.py                      # what `make train` runs
    python tools/train_shapes.py --output-dir out/x SOLVER.MAX_ITER 100   # any KEY VALUE override

Steps, each a tool that also runs on its own:
  1. tools/train_net.py --config-file CONFIG OUTPUT_DIR DIR MODEL.DEVICE cuda|cpu [overrides]
     (generates the shapes data under $MASKRCNN_DATA_DIR, default ./datasets, on first use;
     trains; evaluates on DATASETS.TEST)
  2. tools/plot_metrics.py DIR/metrics.json --output DIR/metrics.png (loss and AP curves)
  3. tools/visualize.py: detections of the first validation images beside their ground truth,
     DIR/detections.png
  4. prints where the files are and the AP table.

Every run writes a fresh folder, output/shapes/<config name>-<YYYYmmdd-HHMMSS> by default
(output/shapes/latest points at the newest), so a finished run is never silently reused. Given an
existing --output-dir, train_net.py resumes from its last checkpoint (and only evaluates when
training had finished).
"""
import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

DEFAULT_CONFIG = os.path.join("configs", "shapes", "e2e_mask_rcnn_R_18_FPN_shapes.yaml")
DEFAULT_OUTPUT_ROOT = os.path.join("output", "shapes")
LATEST_LINK = "latest"


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default=DEFAULT_CONFIG, metavar="FILE",
                        help="model config (default: %(default)s)")
    parser.add_argument("--output-dir", default=None, metavar="DIR",
                        help="run folder (default: a new %s/<config>-<time>)" % DEFAULT_OUTPUT_ROOT)
    parser.add_argument("--device", default=None,
                        help="MODEL.DEVICE (default: cuda when torch sees a GPU, else cpu)")
    parser.add_argument("--num-images", type=int, default=8,
                        help="validation images drawn into detections.png (default %(default)s)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE",
                        help="config overrides passed on to train_net.py, e.g. SOLVER.MAX_ITER 100")
    return parser


def default_device():
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def new_output_dir(config_file, root=DEFAULT_OUTPUT_ROOT, now=None):
    """root/<config file stem>-<YYYYmmdd-HHMMSS>, with a numeric suffix if that exists already."""
    stem = os.path.splitext(os.path.basename(config_file))[0]
    stamp = (now or datetime.datetime.now()).strftime("%Y%m%d-%H%M%S")
    path = os.path.join(root, "%s-%s" % (stem, stamp))
    candidate, count = path, 1
    while os.path.exists(candidate):
        count += 1
        candidate = "%s-%d" % (path, count)
    return candidate


def point_latest_link(output_dir):
    """Make <parent of output_dir>/latest a symlink to output_dir (best effort)."""
    link = os.path.join(os.path.dirname(os.path.abspath(output_dir)), LATEST_LINK)
    try:
        if os.path.islink(link):
            os.unlink(link)
        if not os.path.exists(link):
            os.symlink(os.path.basename(os.path.abspath(output_dir)), link)
    except OSError:
        pass


def run_step(name, command):
    """Run one tool; returns (wall seconds, CPU seconds of the tool and its children)."""
    print("\n==> %s: %s" % (name, " ".join(command)), flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.time()
    completed = subprocess.run(command, cwd=ROOT)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if completed.returncode != 0:
        raise SystemExit("train_shapes: %s failed (exit status %d): %s"
                         % (name, completed.returncode, " ".join(command)))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return time.time() - start, cpu


def read_run_config(output_dir):
    """The config train_net.py saved (OUTPUT_DIR/config.yml), merged into the defaults."""
    from maskrcnn.config import cfg

    run_cfg = cfg.clone()
    run_cfg.merge_from_file(os.path.join(output_dir, "config.yml"))
    return run_cfg


def checkpoint_path(output_dir):
    """The file last_checkpoint names (relative names resolved in output_dir), else model_final.pth."""
    pointer = os.path.join(output_dir, "last_checkpoint")
    if os.path.isfile(pointer):
        with open(pointer) as f:
            name = f.read().strip()
        if name:
            path = name if os.path.isabs(name) else os.path.join(output_dir, name)
            if os.path.isfile(path):
                return path
            return os.path.join(output_dir, os.path.basename(name))
    return os.path.join(output_dir, "model_final.pth")


def load_results(output_dir, dataset_names):
    """{dataset: {iou_type: {metric: value}}} from inference/<dataset>/coco_results.json."""
    results = {}
    for name in dataset_names:
        path = os.path.join(output_dir, "inference", name, "coco_results.json")
        if os.path.isfile(path):
            with open(path) as f:
                results[name] = json.load(f)["results"]
    return results


def summary(output_dir, dataset_names, detections_png, timings):
    """The closing text: where the files are, the AP table, how long the steps took."""
    from maskrcnn.engine.inference import format_results_table

    files = [
        ("checkpoint", checkpoint_path(output_dir)),
        ("config", os.path.join(output_dir, "config.yml")),
        ("metrics", os.path.join(output_dir, "metrics.json")),
        ("loss/AP plot", os.path.join(output_dir, "metrics.png")),
        ("detections", detections_png),
        ("log", os.path.join(output_dir, "log.txt")),
    ]
    for name in dataset_names:
        files.append(("predictions " + name, os.path.join(output_dir, "inference", name, "predictions.pth")))
    width = max(len(label) for label, _ in files)
    lines = ["", "Finished. Files in %s:" % output_dir]
    for label, path in files:
        lines.append("  %-*s  %s%s" % (width, label, path, "" if os.path.exists(path) else "  (missing)"))
    results = load_results(output_dir, dataset_names)
    lines += ["", "COCO AP (AP = AP at IoU 0.50:0.95):",
              format_results_table(results) if results else "(no evaluation results)"]
    lines.append("")
    for step, (wall, cpu) in timings.items():
        lines.append("%s: %.0f s wall, %.0f s CPU" % (step, wall, cpu))
    return "\n".join(lines)


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.num_images < 1:
        raise SystemExit("train_shapes: --num-images must be >= 1")
    config_file = args.config_file
    if not os.path.isfile(os.path.join(ROOT, config_file)) and not os.path.isfile(config_file):
        raise SystemExit("train_shapes: --config-file %s: no such file" % config_file)
    config_file = os.path.abspath(config_file) if os.path.isfile(config_file) else os.path.join(ROOT, config_file)
    output_dir = os.path.abspath(args.output_dir or new_output_dir(config_file, os.path.join(ROOT, DEFAULT_OUTPUT_ROOT)))
    device = args.device or default_device()
    opts = list(args.opts or [])
    python = sys.executable
    tools = os.path.join(ROOT, "tools")

    os.makedirs(output_dir, exist_ok=True)
    if args.output_dir is None:
        point_latest_link(output_dir)
    print("train_shapes: %s on %s, writing %s" % (os.path.relpath(config_file, ROOT), device, output_dir), flush=True)
    timings = {}
    timings["train + evaluation"] = run_step("train", [
        python, os.path.join(tools, "train_net.py"), "--config-file", config_file,
        "MODEL.DEVICE", device, "OUTPUT_DIR", output_dir] + opts)

    run_cfg = read_run_config(output_dir)
    dataset_names = list(run_cfg.DATASETS.TEST)
    timings["plot"] = run_step("plot", [
        python, os.path.join(tools, "plot_metrics.py"), os.path.join(output_dir, "metrics.json"),
        "--output", os.path.join(output_dir, "metrics.png")])
    detections_png = os.path.join(output_dir, "detections.png")
    if dataset_names:
        predictions = os.path.join(output_dir, "inference", dataset_names[0], "predictions.pth")
        timings["detections picture"] = run_step("detections picture", [
            python, os.path.join(tools, "visualize.py"), "--config-file", os.path.join(output_dir, "config.yml"),
            "--dataset", dataset_names[0], "--source", "predictions", "--predictions", predictions,
            "--num-images", str(args.num_images), "--with-gt", "--output", detections_png])
    print(summary(output_dir, dataset_names, detections_png, timings), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
