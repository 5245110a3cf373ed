"""Helpers for multi-process (torch.distributed) training that also work in a single process.

Every function degrades to the single-process answer when torch.distributed is unavailable or no
process group has been initialised, so library code can call them unconditionally.
"""
import pickle

import torch
import torch.distributed as dist


def _initialized():
    return dist.is_available() and dist.is_initialized()


def get_world_size():
    """Number of processes in the default group (1 without a process group)."""
    return dist.get_world_size() if _initialized() else 1


def get_rank():
    """Rank of this process in the default group (0 without a process group)."""
    return dist.get_rank() if _initialized() else 0


def is_main_process():
    return get_rank() == 0


def synchronize():
    """Barrier across all processes; a no-op with a single process."""
    if get_world_size() > 1:
        dist.barrier()


def _comm_device():
    # NCCL only moves CUDA tensors; gloo (and others) move CPU tensors.
    if dist.get_backend() == dist.Backend.NCCL:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_gather(data):
    """Gather any picklable object from every process.

    Returns a list of length world_size whose i-th entry is `data` from rank i
    (``[data]`` without a process group). Objects are pickled into uint8 tensors, padded to the
    largest size, gathered, then unpickled.
    """
    world_size = get_world_size()
    if world_size == 1:
        return [data]
    device = _comm_device()
    payload = torch.frombuffer(bytearray(pickle.dumps(data)), dtype=torch.uint8).to(device)
    local_size = torch.tensor([payload.numel()], dtype=torch.long, device=device)
    sizes = [torch.zeros_like(local_size) for _ in range(world_size)]
    dist.all_gather(sizes, local_size)
    sizes = [int(s.item()) for s in sizes]
    max_size = max(sizes)
    padded = torch.zeros(max_size, dtype=torch.uint8, device=device)
    padded[: payload.numel()] = payload
    buffers = [torch.empty(max_size, dtype=torch.uint8, device=device) for _ in range(world_size)]
    dist.all_gather(buffers, padded)
    return [pickle.loads(buf[:size].cpu().numpy().tobytes()) for buf, size in zip(buffers, sizes)]


def reduce_dict(input_dict, average=True):
    """Sum (or average, if `average`) a dict of scalar tensors over all processes.

    input_dict: {name: Tensor[]} with the same keys on every process. The result is meaningful on
    rank 0 (values are reduced to the main process, as in maskrcnn-benchmark); with a single
    process the dict is returned unchanged.
    """
    world_size = get_world_size()
    if world_size < 2:
        return input_dict
    with torch.no_grad():
        names = sorted(input_dict.keys())
        values = torch.stack([input_dict[k].detach().reshape(()) for k in names])
        device = _comm_device()
        values = values.to(device)
        dist.reduce(values, dst=0)
        if dist.get_rank() == 0 and average:
            values = values / world_size
        return {k: v for k, v in zip(names, values)}


def all_reduce_sum(tensor):
    """Sum of `tensor` over all processes (a new tensor on `tensor`'s device); `tensor` itself
    without a process group."""
    if get_world_size() < 2:
        return tensor
    summed = tensor.detach().clone().to(_comm_device())
    dist.all_reduce(summed)
    return summed.to(tensor.device)
