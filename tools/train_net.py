#!/usr/bin/env python
"""Train a detector from a YAML config, then evaluate it on DATASETS.TEST.

Run `python tools/train_net.py --help` for usage (one process, torchrun, multi-node, resume).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from maskrcnn.config import cfg as default_cfg  # noqa: E402
from maskrcnn.data import make_data_loader  # noqa: E402
from maskrcnn.engine.launch import (  # noqa: E402
    default_argument_parser,
    init_distributed,
    load_config,
    local_rank_from_env,
    resolve_seed,
    seed_all_rngs,
    setup_output_dir,
)
from maskrcnn.engine.trainer import do_train  # noqa: E402
from maskrcnn.modeling.detector import build_detection_model  # noqa: E402
from maskrcnn.modeling.memory_format import channels_last_from_cfg  # noqa: E402
from maskrcnn.solver import make_gradient_clipper, make_lr_scheduler, make_optimizer  # noqa: E402
from maskrcnn.utils.checkpoint import DetectronCheckpointer  # noqa: E402
from maskrcnn.utils.comm import get_rank, is_main_process, synchronize  # noqa: E402
from maskrcnn.utils.metrics_json import flatten_results, replace_record  # noqa: E402

EPILOG = """\
examples:
  one process (CPU or one GPU):
    python tools/train_net.py --config-file configs/shapes/e2e_mask_rcnn_R_18_FPN_shapes.yaml \\
        MODEL.DEVICE cpu SOLVER.IMS_PER_BATCH 4 OUTPUT_DIR out/shapes

  N GPUs on one machine (one process per GPU, NCCL):
    torchrun --nproc_per_node=N tools/train_net.py --config-file X.yaml OUTPUT_DIR out/x

  several processes on the CPU (gloo), e.g. to test a distributed setup:
    torchrun --nproc_per_node=2 tools/train_net.py --config-file X.yaml MODEL.DEVICE cpu

  several machines (run on each; node 0's address as the rendezvous endpoint):
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 \\
        --rdzv_backend=c10d --rdzv_endpoint=HOST0:29500 --rdzv_id=job1 \\
        tools/train_net.py --config-file X.yaml OUTPUT_DIR /shared/out/x
    (--node_rank=1 on the second machine.) OUTPUT_DIR must be on a file system every machine
    sees: the main process writes checkpoints there and every process resumes from them.

notes:
  SOLVER.IMS_PER_BATCH and TEST.IMS_PER_BATCH count images over all processes and must be
  divisible by the number of processes. MODEL.DEVICE cpu trains on the CPU (gloo between
  processes), cuda on GPUs (NCCL, one GPU per process, chosen by LOCAL_RANK).

  Resume: a run restarted with the same command continues from OUTPUT_DIR/last_checkpoint
  (model, optimizer, scheduler, grad scaler, iteration, RNG states, data position); on the CPU it
  ends bit-identical to an uninterrupted run. Checkpoints are written every
  SOLVER.CHECKPOINT_PERIOD iterations and at the end (model_final.pth), atomically.
  MODEL.WEIGHT (a path, catalog://name or URL) initialises a fresh run; only the model weights
  are taken from it (class-dependent layers of another shape are skipped with a warning).
  SEED -1 picks a random seed, recorded in OUTPUT_DIR/config.yml and the checkpoints.

  Precision: DTYPE float32, bfloat16 (torch.autocast, CPU or CUDA) or float16 (autocast with a
  gradient scaler). A NaN or infinite loss stops training with FloatingPointError naming the
  iteration, the loss terms and the checkpoint to resume from.

  Outputs in OUTPUT_DIR: config.yml, log.txt, metrics.json (one JSON line per SOLVER.LOG_PERIOD
  iterations, per evaluation and per validation loss), tensorboard/ (TensorBoard events),
  model_*.pth, last_checkpoint, inference/<dataset>/ (final evaluation: predictions.pth,
  coco_results.json). SOLVER.TEST_PERIOD N > 0 also evaluates on DATASETS.TEST and computes a
  validation loss every N iterations (results in iter_<N>/inference/<dataset>/).
  Evaluate a saved checkpoint again with tools/test_net.py.
"""


def build_parser():
    parser = default_argument_parser("Train a detector (maskrcnn).")
    parser.epilog = EPILOG
    parser.add_argument("--skip-test", dest="skip_test", action="store_true",
                        help="do not evaluate the final model on DATASETS.TEST after training")
    return parser


def _load_initial_weights(cfg, model, logger):
    """MODEL.WEIGHT into a fresh run: model weights only (not its optimizer or iteration)."""
    if not cfg.MODEL.WEIGHT:
        return
    DetectronCheckpointer(cfg, model, save_dir="", save_to_disk=False, logger=logger).load(
        cfg.MODEL.WEIGHT, use_latest=False)


def train(cfg, local_rank, distributed, logger):
    """Build model, optimizer, scheduler and loaders, resume if OUTPUT_DIR holds a checkpoint,
    run do_train. Returns the trained model (unwrapped from DistributedDataParallel)."""
    seed_all_rngs(cfg.SEED + get_rank())
    model = build_detection_model(cfg)
    device = torch.device(cfg.MODEL.DEVICE)
    channels_last_from_cfg(cfg, model.to(device))
    optimizer = make_optimizer(cfg, model)
    scheduler = make_lr_scheduler(cfg, optimizer)

    checkpointer = DetectronCheckpointer(cfg, model, optimizer, scheduler, cfg.OUTPUT_DIR,
                                         save_to_disk=is_main_process(), logger=logger)
    arguments = {"iteration": 0, "seed": int(cfg.SEED)}
    if checkpointer.has_checkpoint():
        extra = checkpointer.load()
        arguments.update(extra)
        logger.info("Resuming from iteration %d", arguments["iteration"])
    else:
        _load_initial_weights(cfg, model, logger)

    if distributed:
        device_ids = [local_rank] if device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=device_ids, output_device=device_ids[0] if device_ids else None,
            broadcast_buffers=False)

    data_loader = make_data_loader(cfg, is_train=True, is_distributed=distributed,
                                   start_iter=arguments["iteration"])
    data_loader_val = None
    if cfg.SOLVER.TEST_PERIOD > 0:  # for the validation loss: transformed images, never TTA views
        val_cfg = cfg.clone()
        val_cfg.defrost()
        val_cfg.TEST.BBOX_AUG.ENABLED = False
        data_loader_val = make_data_loader(val_cfg, is_train=False, is_distributed=distributed)
    do_train(cfg, model, data_loader, data_loader_val, optimizer, scheduler, checkpointer, device,
             cfg.SOLVER.CHECKPOINT_PERIOD, cfg.SOLVER.TEST_PERIOD, arguments,
             grad_clipper=make_gradient_clipper(cfg), distributed=distributed)
    return model.module if distributed else model


def run_final_test(cfg, model, distributed, logger):
    """Evaluate on DATASETS.TEST, log the table, add the numbers to metrics.json."""
    from maskrcnn.engine.inference import format_results_table, run_test

    results = run_test(cfg, model, distributed)
    if results and is_main_process():
        logger.info("Final evaluation:\n%s", format_results_table(results))
        if cfg.OUTPUT_DIR:
            replace_record(os.path.join(cfg.OUTPUT_DIR, "metrics.json"), cfg.SOLVER.MAX_ITER,
                           flatten_results(results))
    synchronize()
    return results


def main(argv=None):
    args = build_parser().parse_args(argv)
    cfg = load_config(default_cfg.clone(), args)
    local_rank = local_rank_from_env(args.local_rank)
    distributed = init_distributed(cfg.MODEL.DEVICE, local_rank)
    resolve_seed(cfg)
    logger = setup_output_dir(cfg, args, logger_name="maskrcnn")
    model = train(cfg, local_rank, distributed, logger)
    if not args.skip_test:
        run_final_test(cfg, model, distributed, logger)
    if distributed:
        torch.distributed.destroy_process_group()
    return model


if __name__ == "__main__":
    main()
