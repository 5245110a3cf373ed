"""Forward + backward time of a 3x3 modulated deformable convolution (DFConv2d-style: an offset/mask
conv followed by the deformable conv), for maskrcnn's op and, where importable, torchvision's.

    python benchmarks/deform_conv.py [--threads 2] [--device cpu] [--size 1 256 50 76]

Each implementation importable in the running environment is timed; run the script once in each
environment to compare (maskrcnn's build is tied to its own torch, torchvision's wheel to another).
Prints one table row per implementation: median and best of the timed repetitions, in milliseconds.
"""
import argparse
import statistics
import time

import torch
from torch import nn


def make_maskrcnn(channels, out_channels):
    from maskrcnn.layers import DFConv2d

    layer = DFConv2d(channels, out_channels, with_modulated_dcn=True, kernel_size=3)
    return layer, layer.offset


def make_torchvision(channels, out_channels):
    from torchvision.ops import deform_conv2d

    class TorchvisionDFConv2d(nn.Module):
        def __init__(self):
            super().__init__()
            self.offset = nn.Conv2d(channels, 27, 3, padding=1)
            self.weight = nn.Parameter(torch.randn(out_channels, channels, 3, 3) / (3 * channels**0.5))

        def forward(self, x):
            prediction = self.offset(x)
            return deform_conv2d(x, prediction[:, :18], self.weight, None, padding=1, mask=prediction[:, 18:].sigmoid())

    layer = TorchvisionDFConv2d()
    return layer, layer.offset


IMPLEMENTATIONS = {"maskrcnn": make_maskrcnn, "torchvision": make_torchvision}


def time_forward_backward(layer, x, repeats, warmup):
    def step():
        layer.zero_grad(set_to_none=True)
        x.grad = None
        layer(x).square().mean().backward()
        if x.is_cuda:
            torch.cuda.synchronize()

    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, nargs=4, default=[1, 256, 50, 76], metavar=("N", "C", "H", "W"))
    parser.add_argument("--out-channels", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n, c, h, w = args.size
    print(f"deformable conv 3x3 {c}->{args.out_channels} (modulated), input {n}x{c}x{h}x{w}, forward+backward, "
          f"device {args.device}, {args.threads} threads, torch {torch.__version__}")
    print(f"{'implementation':<14} {'median ms':>10} {'best ms':>10}")
    for name, make in IMPLEMENTATIONS.items():
        try:
            torch.manual_seed(0)
            layer, offset_conv = make(c, args.out_channels)
        except (ImportError, RuntimeError) as error:
            print(f"{name:<14} {'unavailable: ' + str(error).splitlines()[0][:60]}")
            continue
        nn.init.normal_(offset_conv.weight, std=0.01)  # non-trivial offsets, as after some training
        layer = layer.to(args.device)
        x = torch.randn(n, c, h, w, device=args.device, requires_grad=True)
        median, best = time_forward_backward(layer, x, args.repeats, args.warmup)
        print(f"{name:<14} {median:>10.1f} {best:>10.1f}")


if __name__ == "__main__":
    main()
