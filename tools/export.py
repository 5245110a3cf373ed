"""Export a Faster / Mask R-CNN for deployment: a torch.export program (.pt2) or an ONNX model.

    python tools/export.py --config-file configs/e2e_mask_rcnn_R_50_FPN_1x.yaml --ckpt model.pth \\
        --format onnx --output mask_rcnn.onnx [--height 800 --width 1216] [KEY VALUE ...]

--format export writes torch.export.save(...) of the program (load it with torch.export.load, run
program.module()(image); the maskrcnn package must be imported first, it registers the ops);
--format onnx writes an ONNX model (opset 18) whose NMS and RoIAlign are the standard ONNX
NonMaxSuppression and RoiAlign, for onnxruntime and other runtimes.

The exported model (both formats) works on one image at a time, of any height and width that
are multiples of DATALOADER.SIZE_DIVISIBILITY within [--min-size, --max-size]:
  input  "image"  float32 [1, 3, H, W]: the image as the config's test transforms prepare it
         (resized so the shorter side is INPUT.MIN_SIZE_TEST, the longer at most
         INPUT.MAX_SIZE_TEST; BGR in [0, 255] when INPUT.TO_BGR255, else RGB in [0, 1]; minus
         INPUT.PIXEL_MEAN, divided by INPUT.PIXEL_STD), zero-padded at the bottom and right up to a
         multiple of DATALOADER.SIZE_DIVISIBILITY;
  outputs "boxes" float32 [N, 4] (x1, y1, x2, y2 in the padded input's pixels, clipped to it),
         "scores" float32 [N], "labels" int64 [N], by decreasing score; Mask R-CNN adds
         "masks" float32 [N, 1, M, M], the mask probabilities of each box's class over its box
         (paste them with maskrcnn.modeling.roi_heads.mask_head.inference.Masker, or any
         bilinear resize into the box, then threshold at 0.5).
Batch norms are folded into the convolutions first (TEST.FOLD_BN, default True).

Weights: --ckpt PATH (a checkpoint file from train_net.py, or a converted Detectron / torchvision
one). Without --ckpt the model keeps its random initialisation (for trying the export out; a
warning says so); MODEL.WEIGHT is not read (it usually names ImageNet weights for training).

--verify runs the exported model (the program, or the ONNX model in onnxruntime) and the eager
model on a random image of the export size and prints the largest box difference, whether the
labels agree and both latencies (one run each, after one warm-up).

Supported: GeneralizedRCNN with RoI heads (box, optional mask), FPN or C4. Not supported:
RetinaNet, RPN-only and keypoint models, test-time augmentation, MODEL.ROI_MASK_HEAD.POSTPROCESS_MASKS.
"""
import argparse
import logging
import os
import sys
import time

import torch

from maskrcnn.config import cfg as default_cfg
from maskrcnn.engine.launch import load_config
from maskrcnn.modeling.detector import build_detection_model
from maskrcnn.modeling.export import (
    ExportableDetector, check_exportable, export_onnx, export_program, fold_batch_norms_for_export,
    output_names,
)
from maskrcnn.utils.checkpoint import DetectronCheckpointer

FORMATS = ("export", "onnx")


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, metavar="FILE", help="the model's YAML config")
    parser.add_argument("--ckpt", default=None, metavar="PATH",
                        help="checkpoint file with the weights (default: random initialisation)")
    parser.add_argument("--format", required=True, choices=FORMATS,
                        help="export: torch.export program (.pt2); onnx: ONNX model (.onnx)")
    parser.add_argument("--output", required=True, metavar="FILE", help="where to write the exported model")
    parser.add_argument("--height", type=int, default=None,
                        help="height of the example image traced (default: INPUT.MIN_SIZE_TEST rounded up "
                             "to DATALOADER.SIZE_DIVISIBILITY); the exported model takes other sizes too")
    parser.add_argument("--width", type=int, default=None,
                        help="width of the example image traced (default: the height)")
    parser.add_argument("--min-size", type=int, default=128,
                        help="smallest height / width the exported model accepts (default 128; FPN needs "
                             "every level, stride up to 64, at least 2 cells)")
    parser.add_argument("--max-size", type=int, default=4096,
                        help="largest height / width the exported model accepts (default 4096)")
    parser.add_argument("--onnx-optimize", action="store_true",
                        help="run onnxscript's graph optimizer on the ONNX model (minutes on a large "
                             "model; onnxruntime optimizes the graph at load time anyway)")
    parser.add_argument("--verify", action="store_true",
                        help="compare the exported model with the eager one on a random image and time both")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER, metavar="KEY VALUE",
                        help="config overrides, e.g. MODEL.ROI_HEADS.SCORE_THRESH 0.5")
    return parser


def _round_up(value, divisor):
    return -(-value // divisor) * divisor if divisor > 0 else value


def check_args(parser, args):
    """parser.error (exit status 2) with a message naming the argument at fault."""
    if not os.path.isfile(args.config_file):
        parser.error(f"--config-file {args.config_file}: no such file")
    if args.ckpt is not None and not os.path.isfile(args.ckpt):
        parser.error(f"--ckpt {args.ckpt}: no such checkpoint file")
    output_dir = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(output_dir):
        parser.error(f"--output {args.output}: directory {output_dir} does not exist")
    for name in ("height", "width", "min_size", "max_size"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {value}")
    if args.min_size > args.max_size:
        parser.error(f"--min-size {args.min_size} exceeds --max-size {args.max_size}")
    if len(args.opts or []) % 2:
        parser.error(f"config overrides must come in KEY VALUE pairs, got {args.opts}")


def build_model(cfg, ckpt, logger):
    """The eval-mode detector of ``cfg`` on the CPU, with ``ckpt``'s weights and folded BN."""
    model = build_detection_model(cfg)
    if ckpt is not None:
        DetectronCheckpointer(cfg, model, save_dir="", logger=logger).load(ckpt, use_latest=False)
    else:
        logger.warning("no --ckpt: exporting a randomly initialised model")
    model.eval()
    return fold_batch_norms_for_export(cfg, model)


def example_size(cfg, args):
    divisor = cfg.DATALOADER.SIZE_DIVISIBILITY
    height = args.height if args.height is not None else _round_up(cfg.INPUT.MIN_SIZE_TEST, divisor)
    width = args.width if args.width is not None else height
    return height, width


def _timed(fn, *args):
    fn(*args)  # warm-up
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def verify(detector, args, image, names, logger):
    """Run the written model and the eager one on ``image``; log the differences and latencies."""
    with torch.no_grad():
        eager, eager_s = _timed(lambda x: [t.numpy() for t in detector(x)], image)
    if args.format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(args.output, providers=["CPUExecutionProvider"])
        exported, exported_s = _timed(lambda x: session.run(None, {"image": x.numpy()}), image)
    else:
        module = torch.export.load(args.output).module()
        with torch.no_grad():
            exported, exported_s = _timed(lambda x: [t.numpy() for t in module(x)], image)
    same_count = eager[0].shape == exported[0].shape
    box_diff = float(abs(eager[0] - exported[0]).max()) if same_count and eager[0].size else 0.0
    labels_equal = same_count and (eager[2] == exported[2]).all()
    logger.info("verify on a random %s image: %d / %d detections (eager / exported), max |box diff| %.2e, "
                "labels %s; latency eager %.3f s, exported %.3f s (%s)",
                "x".join(map(str, image.shape[-2:])), len(eager[0]), len(exported[0]), box_diff,
                "identical" if labels_equal else "DIFFERENT", eager_s, exported_s,
                "onnxruntime CPU" if args.format == "onnx" else "torch.export program")
    return same_count and labels_equal and box_diff <= 1e-3


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s: %(message)s")
    logger = logging.getLogger("maskrcnn.export")
    cfg = load_config(default_cfg.clone(), args)
    if cfg.MODEL.DEVICE != "cpu":
        logger.info("exporting on the CPU (MODEL.DEVICE %s ignored)", cfg.MODEL.DEVICE)

    model = build_model(cfg, args.ckpt, logger)
    try:
        check_exportable(model)
    except ValueError as error:
        parser.error(str(error))
    detector = ExportableDetector(model).eval()
    height, width = example_size(cfg, args)
    image = torch.zeros(1, 3, height, width)
    start = time.perf_counter()
    try:
        program = export_program(detector, image, min_size=args.min_size, max_size=args.max_size)
    except ValueError as error:
        parser.error(str(error))
    logger.info("torch.export: %d graph nodes in %.0f s", len(program.graph.nodes), time.perf_counter() - start)
    names = output_names(model)
    if args.format == "export":
        torch.export.save(program, args.output)
    else:
        start = time.perf_counter()
        export_onnx(program, args.output, names, optimize=args.onnx_optimize)
        logger.info("ONNX conversion in %.0f s", time.perf_counter() - start)
    logger.info("wrote %s (%s; input image [1, 3, H, W], H and W multiples of %d in [%d, %d]; outputs %s)",
                args.output, args.format, max(detector.size_divisibility, 1), args.min_size, args.max_size,
                ", ".join(names))
    if args.verify:
        generator = torch.Generator().manual_seed(0)
        sample = torch.randn(1, 3, height, width, generator=generator) * 50
        if not verify(detector, args, sample, names, logger):
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
