"""Process start-up shared by tools/train_net.py and tools/test_net.py.

One process (`python tools/train_net.py ...`) or many (`torchrun --nproc_per_node=N
tools/train_net.py ...`, multi-node through torchrun's own `--nnodes/--node_rank/--rdzv_*`
arguments): torchrun sets WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR and MASTER_PORT, which
`init_distributed` reads.
"""
import argparse
import os
import random

import numpy as np
import torch
import torch.distributed as dist

from ..utils.checkpoint import LAST_CHECKPOINT, Checkpointer
from ..utils.collect_env import collect_env_info
from ..utils.comm import all_gather, get_rank, synchronize
from ..utils.logger import setup_logger
from ..utils.miscellaneous import mkdir, save_config


def default_argument_parser(description):
    """The arguments train_net.py and test_net.py share: --config-file, the legacy --local_rank
    (torch.distributed.launch passed it; torchrun uses the LOCAL_RANK variable instead) and trailing
    KEY VALUE config overrides."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default="", metavar="FILE",
                        help="path to a YAML config (e.g. configs/shapes/e2e_mask_rcnn_R_18_FPN_shapes.yaml)")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None,
                        help="set by the deprecated torch.distributed.launch; torchrun sets LOCAL_RANK instead")
    parser.add_argument("opts", default=None, nargs=argparse.REMAINDER, metavar="KEY VALUE",
                        help="config overrides, e.g. SOLVER.MAX_ITER 100 MODEL.DEVICE cpu")
    return parser


def world_size_from_env():
    """Number of processes torchrun started (1 when run directly)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank_from_env(args_local_rank=None):
    """This process's index on its machine: LOCAL_RANK from torchrun, else --local_rank, else 0."""
    if "LOCAL_RANK" in os.environ:
        return int(os.environ["LOCAL_RANK"])
    return int(args_local_rank or 0)


def init_distributed(device, local_rank):
    """Join the process group torchrun described, if there is more than one process.

    device: MODEL.DEVICE ("cpu", "cuda" or "cuda:K"). CUDA uses NCCL and pins this process to GPU
    `local_rank`; CPU uses gloo. Returns True when a process group was initialised.
    """
    if world_size_from_env() <= 1:
        return False
    use_cuda = str(device).startswith("cuda")
    if use_cuda:
        if not torch.cuda.is_available():
            raise RuntimeError("MODEL.DEVICE is %r but no CUDA device is available; "
                               "use MODEL.DEVICE cpu to train on the CPU with gloo" % (device,))
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", init_method="env://")
    synchronize()
    return True


def load_config(cfg, args):
    """Merge --config-file then the KEY VALUE overrides into `cfg` and freeze it."""
    if args.config_file:
        if not os.path.isfile(args.config_file):
            raise FileNotFoundError("--config-file %s: no such file" % args.config_file)
        cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts or [])
    cfg.freeze()
    return cfg


def _seed_of_last_checkpoint(output_dir):
    """The "seed" recorded in OUTPUT_DIR's last checkpoint, or None (no checkpoint / no seed)."""
    if not output_dir or not os.path.exists(os.path.join(output_dir, LAST_CHECKPOINT)):
        return None
    path = Checkpointer(None, save_dir=output_dir, save_to_disk=False).get_checkpoint_file()
    if not path:
        return None
    # mmap: only the small "seed" entry is read, not the weights
    checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    seed = checkpoint.get("seed") if isinstance(checkpoint, dict) else None
    return None if seed is None else int(seed)


def resolve_seed(cfg):
    """Make cfg.SEED concrete: a value >= 0 is kept; -1 becomes the seed recorded in OUTPUT_DIR's
    last checkpoint (a resumed run), else a random one picked by the main process and shared with
    the others. Returns the seed; `cfg` is updated (and stays frozen if it was)."""
    seed = int(cfg.SEED)
    if seed < 0:
        seed = _seed_of_last_checkpoint(cfg.OUTPUT_DIR)
        if seed is None:
            seed = int.from_bytes(os.urandom(4), "little") & 0x7FFFFFFF
        seed = all_gather(seed)[0]
    frozen = cfg.is_frozen()
    cfg.defrost()
    cfg.SEED = seed
    if frozen:
        cfg.freeze()
    return seed


def seed_all_rngs(seed):
    """Seed Python's `random`, NumPy and torch (all devices) with `seed`."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def setup_output_dir(cfg, args, logger_name="maskrcnn"):
    """Create OUTPUT_DIR, send the log to the console and OUTPUT_DIR/log.txt (main process only),
    log the environment and the config, and save the config in use to OUTPUT_DIR/config.yml.
    Returns the logger."""
    output_dir = cfg.OUTPUT_DIR
    if output_dir:
        mkdir(output_dir)
    logger = setup_logger(logger_name, output_dir, get_rank())
    logger.info("Using %d process(es)", world_size_from_env())
    logger.info(args)
    logger.info("Collecting env info (might take some time)\n%s", collect_env_info())
    if args.config_file:
        logger.info("Loaded configuration file %s", args.config_file)
    logger.info("Running with config:\n%s", cfg)
    if output_dir:
        path = os.path.join(output_dir, "config.yml")
        save_config(cfg, path)
        logger.info("Saved the config in use to %s", path)
    return logger


__all__ = [
    "default_argument_parser", "world_size_from_env", "local_rank_from_env", "init_distributed",
    "load_config", "setup_output_dir", "resolve_seed", "seed_all_rngs",
]
