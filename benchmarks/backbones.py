"""Forward time and peak memory of the registered ResNet / FPN backbones on the CPU, beside torchvision.

    python benchmarks/backbones.py                          # ours only (the .venv of `make test`)
    .venv-peer/bin/python benchmarks/backbones.py           # + torchvision's ResNet-50 ('make bench-env')
    python benchmarks/backbones.py --bodies R-50-FPN,R-18-FPN --size 800x1216 --repeats 5

Inference (eval mode, no autograd) on one random image of --size (HxW, default 800x1216), --threads
intra-op threads (default 2); time is the median of --repeats forwards after one warm-up forward.

Memory is the growth of the resident set size over one forward: in a fresh subprocess per model,
once the model and the input exist, freed heap is returned to the OS (malloc_trim), the kernel's
peak-RSS mark is reset to the current RSS (/proc/self/clear_refs, "5"), one forward runs, and
VmHWM - VmRSS(before) is reported: activations, convolution workspaces and allocator overhead, on
top of the weights (listed separately). tracemalloc cannot see torch's allocations and the profiler
reports per-op totals rather than a peak; a process high-water mark is what "RAM this forward
needs" means. Where clear_refs is not writable the getrusage ru_maxrss delta is used instead.

Peer rows (torchvision, random weights, when it imports): resnet50 up to layer4 vs our R-50-C5 and
resnet_fpn_backbone("resnet50") vs our R-50-FPN. torchvision puts the stride in the 3x3 conv, so
those rows build ours with STRIDE_IN_1X1=False, load torchvision's weights into it and report the
largest output difference: both sides compute the same function.
"""
import argparse
import json
import os
import re
import resource
import subprocess
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (format_ms, optional_import, parse_size, print_table, reset_peak_rss,  # noqa: E402
                    status_kib, time_alternating)

from maskrcnn.config import cfg as global_cfg  # noqa: E402
from maskrcnn.modeling import registry  # noqa: E402
from maskrcnn.modeling.backbone import build_backbone  # noqa: E402
from maskrcnn.modeling.backbone.resnet import _STAGE_SPEC_BLOCK_KINDS, BASIC  # noqa: E402

torchvision_models = optional_import("torchvision.models")
PEERS = {
    "R-50-C5": "torchvision resnet50 (to layer4)",
    "R-50-FPN": "torchvision resnet_fpn_backbone",
}


def backbone_cfg(name, stride_in_1x1=True):
    """The config a YAML file for `name` would give (FPN width 256; basic blocks for R-18/R-34)."""
    cfg = global_cfg.clone()
    cfg.MODEL.BACKBONE.CONV_BODY = name
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = stride_in_1x1
    if "FPN" in name:
        cfg.MODEL.RESNETS.BACKBONE_OUT_CHANNELS = 256
    if _STAGE_SPEC_BLOCK_KINDS.get(name) == BASIC:
        cfg.MODEL.RESNETS.TRANS_FUNC = "BasicBlockWithFixedBatchNorm"
        cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    return cfg


# ------------------------------------------------------------------------ torchvision peers
def torchvision_model(name):
    """(torchvision module returning a list of feature maps, its state dict in our key names)."""
    if name == "R-50-C5":
        net = torchvision_models.resnet50(weights=None)
        children = [net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3,
                    net.layer4]
        body = torch.nn.Sequential(*children)
        model = _ListOutput(body)
        state = {_our_resnet_key(k): v for k, v in net.state_dict().items()
                 if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}
        return model, {"body." + k: v for k, v in state.items()}
    detection = __import__("torchvision.models.detection.backbone_utils", fromlist=["_"])
    net = detection.resnet_fpn_backbone(backbone_name="resnet50", weights=None, trainable_layers=5)
    model = _ListOutput(net)
    state = {}
    for key, value in net.state_dict().items():
        if key.startswith("body."):
            state["body." + _our_resnet_key(key[len("body."):])] = value
            continue
        match = re.match(r"fpn\.(inner|layer)_blocks\.(\d+)\.0\.(weight|bias)$", key)
        if match is None:
            raise KeyError(f"unexpected torchvision FPN key {key}")
        kind, index, field = match.groups()
        state[f"fpn.fpn_{kind}{int(index) + 1}.{field}"] = value
    return model, state


def _our_resnet_key(key):
    return "stem." + key if key.startswith(("conv1.", "bn1.")) else key


class _ListOutput(torch.nn.Module):
    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x):
        out = self.module(x)
        return list(out.values()) if isinstance(out, dict) else [out]


def build_peer_pair(name):
    """(ours with torchvision's stride placement and torchvision's weights, torchvision's model)."""
    peer, state = torchvision_model(name)
    ours = build_backbone(backbone_cfg(name, stride_in_1x1=False)).eval()
    ours.load_state_dict(state, strict=True)
    for module in ours.modules():  # torchvision's frozen BN adds eps = 1e-5 to the variance
        if type(module).__name__ == "FrozenBatchNorm2d":
            module.eps = 1e-5
    return ours, peer.eval()


def build(name, implementation):
    """The model to run: ours ("ours"), ours as the peer computes ("ours-as-peer") or the peer."""
    if implementation == "ours":
        return build_backbone(backbone_cfg(name)).eval()
    if implementation == "peer":
        return torchvision_model(name)[0].eval()
    return build_peer_pair(name)[0]


# ------------------------------------------------------------------------ memory (subprocess)
def measure_memory_child(name, implementation, size, threads):
    """Runs in a fresh process: prints JSON with the peak-RSS growth (KiB) over one forward."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build(name, implementation)
    image = torch.randn(1, 3, *size)
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    if reset_peak_rss():
        before = status_kib("VmRSS")
        with torch.no_grad():
            model(image)
        growth = status_kib("VmHWM") - before
    else:  # lifetime high-water mark: an underestimate if building peaked higher than the forward
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        with torch.no_grad():
            model(image)
        growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(json.dumps({"forward_kib": growth, "weights_bytes": weights}))


def measure_memory(name, implementation, size, threads):
    command = [sys.executable, os.path.abspath(__file__), "--memory-child", name, implementation,
               "--size", f"{size[0]}x{size[1]}", "--threads", str(threads)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def mib(value, unit_bytes):
    return f"{value * unit_bytes / 2**20:.0f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    registered = sorted(n for n in registry.BACKBONES if n.startswith("R-"))
    parser.add_argument("--bodies", default=",".join(registered),
                        help="comma-separated backbone names (default: every registered R-* body)")
    parser.add_argument("--size", default="800x1216", help="input HxW (default 800x1216)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards (median reported)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--memory-child", nargs=2, metavar=("NAME", "IMPL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = parse_size(args.size)
    if args.memory_child:
        measure_memory_child(*args.memory_child, size, args.threads)
        return
    torch.set_num_threads(args.threads)
    bodies = [b for b in args.bodies.split(",") if b]
    unknown = sorted(set(bodies) - set(registered))
    if unknown:
        parser.error(f"--bodies: unknown {unknown}; registered: {registered}")

    peer_version = (__import__("torchvision").__version__ if torchvision_models else None)
    print(f"torch {torch.__version__}, {args.threads} CPU threads, input 1x3x{size[0]}x{size[1]}, "
          f"eval forward, median of {args.repeats}; peer: "
          f"{'torchvision ' + peer_version if peer_version else 'torchvision (not importable)'}\n")
    image = torch.randn(1, 3, *size)
    rows = []
    for name in bodies:
        implementations = ["ours"]
        if torchvision_models is not None and name in PEERS:
            implementations += ["ours-as-peer", "peer"]
        models = {"ours": build(name, "ours")}
        if "peer" in implementations:
            models["ours-as-peer"], models["peer"] = build_peer_pair(name)

        def forward(model):
            with torch.no_grad():
                return model(image)

        times = time_alternating({impl: (lambda m=m: forward(m)) for impl, m in models.items()},
                                 args.repeats)
        difference = None
        if "peer" in models:
            ours_out, peer_out = forward(models["ours-as-peer"]), forward(models["peer"])
            difference = max(((a - b).abs().max() / b.abs().max()).item()
                             for a, b in zip(ours_out, peer_out))
        for impl in implementations:
            label = {"ours": f"maskrcnn {name}",
                     "ours-as-peer": f"maskrcnn {name} (STRIDE_IN_1X1=False)",
                     "peer": PEERS.get(name, "")}[impl]
            memory = None if args.no_memory else measure_memory(name, impl, size, args.threads)
            rows.append([
                label,
                format_ms(times[impl]),
                "-" if memory is None else mib(memory["forward_kib"], 1024),
                "-" if memory is None else mib(memory["weights_bytes"], 1),
                f"{difference:.1e}" if difference is not None and impl != "ours" else "-",
            ])
        del models
    print_table(["model", "forward ms", "forward peak RSS growth MiB", "weights MiB",
                 "max |ours - tv| / max |tv|"], rows)


if __name__ == "__main__":
    main()
