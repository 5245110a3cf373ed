"""The iteration-based training loop (maskrcnn-benchmark's `do_train`).

Per iteration: forward under `torch.autocast` (cfg.DTYPE), a finiteness check of every loss term
(a NaN / inf stops training with FloatingPointError), backward through a GradScaler (float16
only), optional gradient clipping, optimizer and scheduler steps. Every SOLVER.LOG_PERIOD
iterations a log line, a metrics.json line and TensorBoard scalars; every SOLVER.TEST_PERIOD
iterations evaluation on DATASETS.TEST plus a validation loss; every `checkpoint_period`
iterations and at the end a checkpoint that resumes exactly (model, optimizer, scheduler, grad
scaler, iteration, seed and the RNG states of every process).
"""
import contextlib
import datetime
import logging
import os
import resource
import sys
import time

import torch

from maskrcnn.utils.checkpoint import get_rng_states, set_rng_states
from maskrcnn.utils.comm import all_gather, get_rank, get_world_size, is_main_process, reduce_dict
from maskrcnn.utils.metric_logger import MetricLogger
from maskrcnn.utils.metrics_json import MetricsWriter, flatten_results

__all__ = [
    "do_train", "autocast_context", "make_grad_scaler", "check_losses_finite",
    "compute_validation_loss", "peak_memory_mb", "preserved_rng_states", "restore_rng_states",
]

logger = logging.getLogger("maskrcnn.trainer")

_AMP_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def _device_type(device):
    return torch.device(device).type


def autocast_context(dtype, device):
    """torch.autocast for DTYPE "float16" / "bfloat16" on `device`'s type; a no-op for "float32"."""
    if dtype == "float32":
        return contextlib.nullcontext()
    if dtype not in _AMP_DTYPES:
        raise ValueError(f"DTYPE must be 'float32', 'float16' or 'bfloat16', got {dtype!r}")
    return torch.autocast(device_type=_device_type(device), dtype=_AMP_DTYPES[dtype])


def make_grad_scaler(dtype, device):
    """A torch.amp.GradScaler, enabled only for DTYPE "float16" (bfloat16 has float32's range)."""
    return torch.amp.GradScaler(_device_type(device), enabled=(dtype == "float16"))


def peak_memory_mb(device):
    """Peak memory of this process in MiB: CUDA max allocated on a CUDA device, else max RSS."""
    if _device_type(device) == "cuda" and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated(torch.device(device)) / 1024.0 / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def check_losses_finite(loss_dict, iteration, last_checkpoint):
    """Raise FloatingPointError if any loss term (of any process) is NaN or infinite.

    The message names the iteration, every loss term with its value on this process and the last
    checkpoint written (the one a restart resumes from). All processes raise together: the check
    is all-reduced, so no process is left waiting in a collective.
    """
    values = {name: float(loss.detach().float()) for name, loss in loss_dict.items()}
    bad = torch.tensor([sum(1 for v in values.values() if not torch.isfinite(torch.tensor(v)))],
                       dtype=torch.float32)
    if get_world_size() > 1:
        bad = bad.to(_collective_device())
        torch.distributed.all_reduce(bad)
    if bad.item() == 0:
        return
    terms = ", ".join(f"{name}={value}" for name, value in values.items())
    raise FloatingPointError(
        f"Loss became infinite or NaN at iteration {iteration} (rank {get_rank()}): {terms}. "
        f"Last good checkpoint: {last_checkpoint or 'none written yet'}. Training stopped; "
        "lower SOLVER.BASE_LR, raise SOLVER.WARMUP_ITERS, enable SOLVER.CLIP_GRADIENTS or use "
        "DTYPE float32, then restart (the run resumes from that checkpoint)."
    )


def _collective_device():
    if torch.distributed.get_backend() == torch.distributed.Backend.NCCL:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


@contextlib.contextmanager
def preserved_rng_states():
    """Run the body (evaluation, validation loss) without moving any global RNG, so periodic
    evaluation does not change the training that follows."""
    states = get_rng_states()
    try:
        yield
    finally:
        set_rng_states(states)


def restore_rng_states(saved):
    """Restore this process's RNG states from a checkpoint's "rng_states" entry (a list with one
    state per rank, or a single state)."""
    if isinstance(saved, dict):
        saved = [saved]
    rank, world = get_rank(), get_world_size()
    if len(saved) != world:
        logger.warning("The checkpoint holds RNG states of %d process(es), this run has %d: "
                       "the resumed run will not replay the uninterrupted one exactly",
                       len(saved), world)
    set_rng_states(saved[rank % len(saved)])


def _unwrap(model):
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def _to_device(images, targets, device):
    return images.to(device), [target.to(device) for target in targets]


def compute_validation_loss(model, data_loaders, device, dtype="float32"):
    """Mean of each loss term (and of their sum, "loss") over the batches of `data_loaders`
    (one loader or a list), with the model in training mode and no gradients, averaged over
    processes. Returns {name: float} on every process (meaningful on the main one)."""
    if not isinstance(data_loaders, (list, tuple)):
        data_loaders = [data_loaders]
    was_training = model.training
    model.train()
    totals, batches = {}, 0
    with torch.no_grad():
        for loader in data_loaders:
            for images, targets, _ in loader:
                images, targets = _to_device(images, targets, device)
                with autocast_context(dtype, device):
                    loss_dict = model(images, targets)
                for name, value in loss_dict.items():
                    totals[name] = totals.get(name, 0.0) + value.detach().float()
                batches += 1
    model.train(was_training)
    if batches == 0:
        return {}
    means = {name: total / batches for name, total in totals.items()}
    means["loss"] = sum(means.values())
    return {name: float(value) for name, value in reduce_dict(means).items()}


class _Outputs(object):
    """metrics.json, TensorBoard and the progress bar, on the main process only."""

    def __init__(self, output_dir, start_iter, max_iter, main):
        self.metrics = self.tensorboard = self.progress = None
        if main and output_dir:
            self.metrics = MetricsWriter(os.path.join(output_dir, "metrics.json"), start_iter)
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events a killed run wrote after the checkpoint we resume from
            self.tensorboard = SummaryWriter(os.path.join(output_dir, "tensorboard"),
                                             purge_step=start_iter + 1 if start_iter else None)
        if main and sys.stdout.isatty():
            from tqdm import tqdm

            self.progress = tqdm(total=max_iter, initial=start_iter, desc="train",
                                 dynamic_ncols=True, leave=False)

    def write(self, iteration, values, prefix=""):
        if self.metrics is not None:
            self.metrics.write(iteration, values)
        if self.tensorboard is not None:
            for key, value in values.items():
                self.tensorboard.add_scalar(prefix + key, value, iteration)
            self.tensorboard.flush()

    def tick(self, loss):
        if self.progress is not None:
            self.progress.update(1)
            self.progress.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def close(self):
        if self.progress is not None:
            self.progress.close()
        if self.metrics is not None:
            self.metrics.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


def _evaluate(cfg, model, data_loader_val, device, iteration, distributed, outputs):
    """Periodic evaluation (run_test on DATASETS.TEST) and validation loss at `iteration`."""
    from maskrcnn.engine.inference import format_results_table, run_test

    module = _unwrap(model)  # no DDP collectives inside forward: shards may differ in length
    with preserved_rng_states():
        output_dir = os.path.join(cfg.OUTPUT_DIR, "inference", f"iter_{iteration:07d}") \
            if cfg.OUTPUT_DIR else None
        results = run_test(cfg, module, distributed, output_dir=output_dir)
        if results:
            logger.info("Evaluation at iteration %d:\n%s", iteration, format_results_table(results))
            outputs.write(iteration, flatten_results(results))
        if data_loader_val is not None:
            val = compute_validation_loss(module, data_loader_val, device, cfg.DTYPE)
            if val and is_main_process():
                logger.info("Validation loss at iteration %d: %s", iteration,
                            "  ".join(f"{k}: {v:.4f}" for k, v in val.items()))
                outputs.write(iteration, {f"val/{k}": v for k, v in val.items()})
    model.train()


def do_train(
    cfg,
    model,
    data_loader,
    data_loader_val,
    optimizer,
    scheduler,
    checkpointer,
    device,
    checkpoint_period,
    test_period,
    arguments,
    grad_clipper=None,
    distributed=False,
):
    """Train `model` for the iterations `data_loader` yields, from arguments["iteration"] on.

    cfg: the config (DTYPE, SOLVER.LOG_PERIOD, OUTPUT_DIR, DATASETS.TEST).
    model: the detector (or its DistributedDataParallel wrapper), on `device`.
    data_loader: training loader built with start_iter=arguments["iteration"]; len() is MAX_ITER.
    data_loader_val: loader(s) for the validation loss at each evaluation, or None.
    checkpoint_period / test_period: save / evaluate every N iterations (test_period 0 = never;
        the evaluation after the last iteration is tools/train_net.py's final test).
    arguments: dict saved into every checkpoint; "iteration" is the last finished iteration.
        Entries "grad_scaler" and "rng_states" (from a resumed checkpoint) are restored and removed.
    grad_clipper: make_gradient_clipper(cfg) or None.
    distributed: whether a process group is running (for run_test).
    """
    log_period = max(int(cfg.SOLVER.LOG_PERIOD), 1)
    meters = MetricLogger(delimiter="  ")
    max_iter = len(data_loader)
    start_iter = int(arguments["iteration"])
    scaler = make_grad_scaler(cfg.DTYPE, device)
    scaler_state = arguments.pop("grad_scaler", None)
    if scaler_state:
        scaler.load_state_dict(scaler_state)
    rng_states = arguments.pop("rng_states", None)
    main = is_main_process()
    outputs = _Outputs(cfg.OUTPUT_DIR, start_iter, max_iter, main)
    last_checkpoint = checkpointer.get_checkpoint_file() if checkpointer.has_checkpoint() else None

    def save(name):
        # every process's RNG states, gathered onto the main process that writes the file
        states = all_gather(get_rng_states())
        path = checkpointer.save(name, grad_scaler=scaler.state_dict(), rng_states=states,
                                 **arguments)
        return path or os.path.join(checkpointer.save_dir, f"{name}.pth")

    logger.info("Start training from iteration %d to %d", start_iter, max_iter)
    model.train()
    batches = iter(data_loader)  # before the RNG restore: making an iterator may draw numbers
    if rng_states is not None:
        restore_rng_states(rng_states)
    start_training_time = time.time()
    end = time.time()
    try:
        for iteration in range(start_iter + 1, max_iter + 1):
            images, targets, _ = next(batches)
            data_time = time.time() - end
            arguments["iteration"] = iteration
            images, targets = _to_device(images, targets, device)

            with autocast_context(cfg.DTYPE, device):
                loss_dict = model(images, targets)
            check_losses_finite(loss_dict, iteration, last_checkpoint)
            losses = sum(loss.float() for loss in loss_dict.values())
            reduced = reduce_dict({k: v.detach().float() for k, v in loss_dict.items()})
            loss_value = float(sum(reduced.values()))
            meters.update(loss=loss_value, **reduced)
            lr = optimizer.param_groups[0]["lr"]

            optimizer.zero_grad(set_to_none=True)
            scaler.scale(losses).backward()
            if grad_clipper is not None:
                scaler.unscale_(optimizer)
                grad_clipper(model.parameters())
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()

            batch_time = time.time() - end
            meters.update(time=batch_time, data=data_time)
            eta_seconds = meters.time.global_avg * (max_iter - iteration)
            outputs.tick(loss_value)

            if iteration % log_period == 0 or iteration == max_iter:
                max_mem = peak_memory_mb(device)
                logger.info("  ".join([
                    f"eta: {datetime.timedelta(seconds=int(eta_seconds))}",
                    f"iter: {iteration}",
                    str(meters),
                    f"lr: {lr:.6f}",
                    f"max mem: {max_mem:.0f} MB",
                ]))
                record = {"lr": lr, "loss": meters.loss.median}
                record.update({name: meters.meters[name].median for name in reduced})
                record.update(time=meters.time.median, data_time=meters.data.median,
                              eta_seconds=eta_seconds, max_mem_mb=max_mem)
                outputs.write(iteration, record, prefix="train/")
            if test_period > 0 and iteration % test_period == 0 and iteration != max_iter:
                _evaluate(cfg, model, data_loader_val, device, iteration, distributed, outputs)
            if checkpoint_period > 0 and iteration % checkpoint_period == 0:
                last_checkpoint = save(f"model_{iteration:07d}")
            if iteration == max_iter:
                last_checkpoint = save("model_final")
            end = time.time()
    finally:
        outputs.close()

    total = time.time() - start_training_time
    done = max(max_iter - start_iter, 1)
    logger.info("Total training time: %s (%.4f s / it)",
                datetime.timedelta(seconds=int(total)), total / done)
    return arguments
