"""Int8 backbone on the CPU (TEST.INT8): latency and AP beside the float inference model.

    # the shapes model `make train` trained: latency at its 128x128 test size, and AP on shapes_val
    PYTHONPATH=$PWD python benchmarks/int8.py --config-file output/shapes/latest/config.yml \\
        --weights output/shapes/latest/model_final.pth
    # latency only (random weights), R-50-FPN Mask R-CNN at 800x1216, 100 detections kept
    PYTHONPATH=$PWD python benchmarks/int8.py --config-file configs/e2e_mask_rcnn_R_50_FPN_1x.yaml \\
        --size 800x1216 --opts MODEL.ROI_HEADS.SCORE_THRESH 0.0

Float is the project's default inference model (``optimize_for_inference_from_cfg``: batch norms
folded into the convolutions, channels-last weights); int8 is that model with its backbone
quantized (``maskrcnn.modeling.quantization.quantize_backbone``, --engine, per-channel int8
weights, histogram-calibrated uint8 activations), RPN and heads float. Calibration: the first
--calibration-images images of DATASETS.TEST[0] with --weights (the set the AP is measured on),
random images of --size without.

Latency rows, on one random image of --size ([0, 1] pixels normalised as the config says, padded
to DATALOADER.SIZE_DIVISIBILITY), under torch.inference_mode: the backbone alone (image tensor ->
feature maps) and the whole eval forward (detections, masks pasted as the config says). Medians of
--repeats runs, float and int8 alternating in one process after --warmup untimed runs each; CPU s
is the process's CPU time over a run (all threads; steadier than wall time on a shared machine).
AP rows (with --weights): ``maskrcnn.engine.inference.run_test`` of each model on DATASETS.TEST,
as tools/test_net.py evaluates (COCO box and mask AP).
"""
import argparse
import os
import sys
import tempfile
import time

import torch

from maskrcnn.config import cfg as default_cfg
from maskrcnn.engine.inference import run_test
from maskrcnn.modeling.detector import build_detection_model
from maskrcnn.modeling.inference_setup import optimize_for_inference_from_cfg
from maskrcnn.modeling.quantization import (DEFAULT_ENGINE, calibration_batches, calibration_loader_from_cfg,
                                            quantize_backbone)
from maskrcnn.structures.image_list import to_image_list
from maskrcnn.utils.checkpoint import DetectronCheckpointer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import format_ms, format_ratio, measure_alternating, parse_size, print_table  # noqa: E402
from detection_pair import normalize_for_ours, random_images  # noqa: E402

AP_METRICS = ("AP", "AP50", "AP75")


def load_cfg(args):
    cfg = default_cfg.clone()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.WEIGHT", args.weights or "", "TEST.INT8", False,
                         "TEST.INT8_CALIBRATION_IMAGES", args.calibration_images] + list(args.opts))
    cfg.freeze()
    return cfg


def float_model(cfg, weights):
    """The float inference model: weights loaded (random when none), BN folded, channels-last."""
    torch.manual_seed(0)
    model = build_detection_model(cfg)
    if weights:
        DetectronCheckpointer(cfg, model).load(weights)
    return optimize_for_inference_from_cfg(cfg, model, inplace=True)


def calibration_source(cfg, args, image_size):
    """The test data loader with --weights, else random images of --size."""
    if args.weights:
        return calibration_loader_from_cfg(cfg)
    generator = torch.Generator().manual_seed(1)
    return [normalize_for_ours(random_images(1, image_size, generator), cfg, "cpu")
            for _ in range(args.calibration_images)]


def latency_rows(models, cfg, image_size, args):
    image = normalize_for_ours(random_images(1, image_size, torch.Generator().manual_seed(0)), cfg, "cpu")
    batch = to_image_list(image, cfg.DATALOADER.SIZE_DIVISIBILITY).tensors

    def bound(run, model):
        def call():
            with torch.inference_mode():
                return run(model)
        return call

    rows = []
    cases = [("backbone", lambda model: model.backbone(batch)),
             ("eval forward", lambda model: model(image))]
    for case, run in cases:
        functions = {name: bound(run, model) for name, model in models.items()}
        measured = measure_alternating(functions, args.repeats, args.warmup)
        f, q = measured["float"], measured["int8"]
        detections = "-" if case == "backbone" else f"{len(f.result[0])}/{len(q.result[0])}"
        rows.append([case, format_ms(f.seconds), format_ms(q.seconds), format_ratio(q.seconds, f.seconds),
                     f"{f.cpu_seconds:.3f}", f"{q.cpu_seconds:.3f}", format_ratio(q.cpu_seconds, f.cpu_seconds),
                     detections])
    return rows


def ap_rows(models, cfg):
    results = {}
    for name, model in models.items():
        with tempfile.TemporaryDirectory() as output_dir:
            results[name] = run_test(cfg, model, distributed=False, output_dir=output_dir)
    rows = []
    for dataset, per_type in results["float"].items():
        for iou_type, metrics in per_type.items():
            for metric in AP_METRICS:
                f, q = metrics[metric], results["int8"][dataset][iou_type][metric]
                rows.append([dataset, iou_type, metric, f"{f:.4f}", f"{q:.4f}", f"{q - f:+.4f}"])
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--weights", default="", metavar="PATH",
                        help="checkpoint to load (then AP is measured on DATASETS.TEST); none: random weights")
    parser.add_argument("--size", default=None, help="latency image HxW (default: the config's INPUT.MIN_SIZE_TEST"
                                                     " square, e.g. 128x128 for the shapes model)")
    parser.add_argument("--calibration-images", type=int, default=default_cfg.TEST.INT8_CALIBRATION_IMAGES)
    parser.add_argument("--engine", default=DEFAULT_ENGINE, help="quantized engine: x86, fbgemm or onednn")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per model (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs per model before timing")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--skip-ap", action="store_true", help="latency only, even with --weights")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="config KEY VALUE pairs merged last")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_cfg(args)
    image_size = parse_size(args.size) if args.size else (cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST)

    reference = float_model(cfg, args.weights)
    start = time.perf_counter()
    calibration = calibration_batches(calibration_source(cfg, args, image_size), args.calibration_images)
    int8 = quantize_backbone(reference, calibration, engine=args.engine)
    quantize_seconds = time.perf_counter() - start
    models = {"float": reference, "int8": int8}

    print(f"torch {torch.__version__}, cpu, {args.threads} threads, quantized engine {args.engine}; "
          f"{args.config_file}, weights: {args.weights or 'random'}")
    print(f"quantizing the backbone (fold, trace, {args.calibration_images} calibration images, convert): "
          f"{quantize_seconds:.1f} s")
    print(f"\nlatency, one {image_size[0]}x{image_size[1]} image, median of {args.repeats} "
          f"(after {args.warmup} warm-up), float and int8 alternating\n")
    print_table(["case", "float ms", "int8 ms", "int8 / float", "float CPU s", "int8 CPU s", "CPU int8 / float",
                 "detections float/int8"], latency_rows(models, cfg, image_size, args))
    if args.weights and not args.skip_ap:
        print(f"\nCOCO AP on {', '.join(cfg.DATASETS.TEST)} (run_test, as tools/test_net.py)\n")
        print_table(["dataset", "type", "metric", "float", "int8", "int8 - float"], ap_rows(models, cfg))


if __name__ == "__main__":
    main()
