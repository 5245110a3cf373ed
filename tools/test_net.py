"""Evaluate a trained detector on the DATASETS.TEST sets of a config.

One process:
    python tools/test_net.py --config-file configs/shapes/e2e_mask_rcnn_R_18_FPN_shapes.yaml \\
        [--ckpt PATH] [KEY VALUE ...]
Several processes (one per GPU, or CPU processes with gloo; images are split between them and the
predictions gathered on the first):
    torchrun --nproc_per_node=N tools/test_net.py --config-file X.yaml [--ckpt PATH] [KEY VALUE ...]
Several machines: torchrun's own --nnodes, --node_rank and --rdzv_* (or --master_addr/--master_port).

Weights: --ckpt PATH (a file, a catalog:// name or a URL); without it the checkpoint named in
OUTPUT_DIR/last_checkpoint (the end of training); without that, MODEL.WEIGHT. Checkpoints are read
with torch.load(weights_only=True).

Writes, for each dataset of DATASETS.TEST, OUTPUT_DIR/inference/<dataset>/: predictions.pth (the
list of BoxList predictions, one per image; torch.load(..., weights_only=False) to read it back),
bbox.json / segm.json / keypoints.json (COCO-format detections) and coco_results.json (the metrics
and per-class AP). The log goes to the console and OUTPUT_DIR/inference/log.txt, the config in use
to OUTPUT_DIR/inference/config.yml (its OUTPUT_DIR reads .../inference). The AP table is printed
at the end.

Useful overrides: MODEL.DEVICE cpu|cuda, TEST.IMS_PER_BATCH N (over all processes),
TEST.BBOX_AUG.ENABLED True (test-time augmentation: TEST.BBOX_AUG.H_FLIP, SCALES, MAX_SIZE,
SCALE_H_FLIP), TEST.INT8 True (CPU only: the backbone quantized to int8 after loading the
weights, calibrated on the first TEST.INT8_CALIBRATION_IMAGES images of DATASETS.TEST[0]),
TEST.COMPILE True (the backbone, RPN head and box head compiled by torch.compile with frozen
weights: slower first images, faster after; maskrcnn.modeling.compiled_inference),
DATASETS.TEST "('name',)", OUTPUT_DIR path.
"""
import os
import sys

import torch

from maskrcnn.config import cfg
from maskrcnn.engine.inference import format_results_table, run_test
from maskrcnn.engine.launch import (
    default_argument_parser, init_distributed, load_config, local_rank_from_env, setup_output_dir,
)
from maskrcnn.modeling.detector import build_detection_model
from maskrcnn.modeling.memory_format import channels_last_from_cfg
from maskrcnn.modeling.inference_setup import optimize_for_inference_from_cfg
from maskrcnn.utils.checkpoint import DetectronCheckpointer
from maskrcnn.utils.comm import is_main_process, synchronize


def build_parser():
    parser = default_argument_parser(description=__doc__)
    parser.add_argument("--ckpt", default=None, metavar="PATH",
                        help="weights to evaluate: a checkpoint file, catalog://NAME or a URL "
                             "(default: OUTPUT_DIR/last_checkpoint, else MODEL.WEIGHT)")
    return parser


def _is_local_file_name(name):
    return not (name.startswith("catalog://") or name.startswith("http://") or name.startswith("https://"))


def load_weights(cfg, model, ckpt, logger):
    """Load --ckpt, else OUTPUT_DIR's last checkpoint, else MODEL.WEIGHT into `model`; returns the
    name of what was loaded ("" when nothing was)."""
    checkpointer = DetectronCheckpointer(cfg, model, save_dir=cfg.OUTPUT_DIR, logger=logger)
    if ckpt is not None:
        source = ckpt
    elif checkpointer.has_checkpoint():
        source = checkpointer.get_checkpoint_file()
    else:
        source = cfg.MODEL.WEIGHT
    if not source:
        logger.warning("No weights: no --ckpt, no %s/last_checkpoint and MODEL.WEIGHT is empty; evaluating "
                       "a randomly initialised model", cfg.OUTPUT_DIR)
        return ""
    checkpointer.load(source, use_latest=False)
    return source


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.ckpt is not None and _is_local_file_name(args.ckpt) and not os.path.isfile(args.ckpt):
        parser.error("--ckpt %s: no such checkpoint file" % args.ckpt)  # exits with status 2
    load_config(cfg, args)
    distributed = init_distributed(cfg.MODEL.DEVICE, local_rank_from_env(args.local_rank))

    # the log and config of this run go beside the results, not over the training run's own
    log_cfg = cfg.clone()
    log_cfg.defrost()
    log_cfg.OUTPUT_DIR = os.path.join(cfg.OUTPUT_DIR, "inference") if cfg.OUTPUT_DIR else ""
    log_cfg.freeze()
    logger = setup_output_dir(log_cfg, args)

    model = build_detection_model(cfg)
    channels_last_from_cfg(cfg, model.to(torch.device(cfg.MODEL.DEVICE)))
    source = load_weights(cfg, model, args.ckpt, logger)
    logger.info("Evaluating weights %s", source or "(random initialisation)")
    # TEST.FOLD_BN, TEST.CHANNELS_LAST; TEST.INT8: int8 backbone (CPU only); TEST.COMPILE
    model = optimize_for_inference_from_cfg(cfg, model, inplace=True)

    results = run_test(cfg, model, distributed, output_dir=cfg.OUTPUT_DIR)
    synchronize()
    if is_main_process():
        logger.info("Results of %s:\n%s", source or "(random initialisation)", format_results_table(results))
    if distributed:
        torch.distributed.destroy_process_group()
    return results


if __name__ == "__main__":
    main()
    sys.exit(0)
