"""3x3 stride-1 convolutions on the CPU: Winograd F(4x4, 3x3) (maskrcnn.layers.winograd_conv, what
MODEL.WINOGRAD routes to) beside torch's own kernel (oneDNN), forward and forward + backward.

    python benchmarks/winograd.py                      # the detector's shapes (below)
    python benchmarks/winograd.py --cases 2x256x128x128,17x256x14x14 --threads 2

Cases are NxCxHxW inputs of a C -> C convolution, channels-last float32, weights requiring
gradients. The defaults are Mask R-CNN R-50-FPN's at 2 training images of 512x512: the P2 / P3 /
P4 FPN output and RPN convolutions (2x256x{128,64,32}^2), the mask head's four convolutions on 128
and 17 positive RoIs (Nx256x14x14), ResNet's stage-2 and stage-1 3x3s (2x128x64x64, 2x64x128x128)
and stage 4's (2x512x16x16). Each row: median milliseconds of --repeats alternating runs, the ratio
winograd / oneDNN, whether MODEL.WINOGRAD uses winograd for that shape (`winograd_applies`), and the
largest difference of each from a float64 convolution relative to its largest value.
"""
import argparse
import os
import sys

import torch
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import format_ratio, measure_alternating, print_table  # noqa: E402

from maskrcnn.layers import Conv2d  # noqa: E402
from maskrcnn.layers.winograd_conv import winograd_applies, winograd_conv3x3  # noqa: E402

DEFAULT_CASES = ("2x256x128x128,2x256x64x64,2x256x32x32,128x256x14x14,17x256x14x14,"
                 "2x128x64x64,2x64x128x128,2x512x16x16")


def parse_case(text):
    n, c, h, w = (int(v) for v in text.lower().split("x"))
    return n, c, h, w


def forward_and_backward(conv):
    def run(x, weight, grad):
        return torch.autograd.grad(conv(x, weight), (x, weight), grad)
    return run


def relative_error(result, exact):
    return ((result.double() - exact).abs().max() / exact.abs().max()).item()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=DEFAULT_CASES, help=f"comma-separated NxCxHxW (default {DEFAULT_CASES})")
    parser.add_argument("--repeats", type=int, default=9, help="timed runs per kernel (median reported)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, cpu, {args.threads} threads, median of {args.repeats}")

    direct = lambda x, w: F.conv2d(x, w, padding=1)  # noqa: E731
    rows = []
    for text in args.cases.split(","):
        n, c, h, w = parse_case(text)
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(n, c, h, w, generator=generator).contiguous(memory_format=torch.channels_last)
        weight = torch.randn(c, c, 3, 3, generator=generator) / (3 * c**0.5)
        grad = torch.randn(n, c, h, w, generator=generator).contiguous(memory_format=torch.channels_last)
        exact = F.conv2d(x.double(), weight.double(), padding=1)
        forward = measure_alternating({"onednn": lambda: direct(x, weight), "winograd": lambda: winograd_conv3x3(x, weight)},
                                      args.repeats)
        x.requires_grad_()
        weight.requires_grad_()
        both = measure_alternating({"onednn": lambda: forward_and_backward(direct)(x, weight, grad),
                                    "winograd": lambda: forward_and_backward(winograd_conv3x3)(x, weight, grad)},
                                   args.repeats)
        ms = {name: (forward[name].seconds * 1e3, both[name].seconds * 1e3) for name in forward}
        conv = Conv2d(c, c, 3, padding=1)
        rows.append([text, f"{ms['onednn'][0]:.1f}", f"{ms['winograd'][0]:.1f}",
                     format_ratio(ms["winograd"][0], ms["onednn"][0]),
                     f"{ms['onednn'][1]:.1f}", f"{ms['winograd'][1]:.1f}",
                     format_ratio(ms["winograd"][1], ms["onednn"][1]),
                     "yes" if winograd_applies(conv, x) else "no",
                     f"{relative_error(forward['onednn'].result, exact):.1e}",
                     f"{relative_error(forward['winograd'].result, exact):.1e}"])
        print("done: " + " | ".join(rows[-1]), file=sys.stderr, flush=True)
    print()
    print_table(["input NxCxHxW", "fwd oneDNN ms", "fwd winograd ms", "winograd / oneDNN",
                 "fwd+bwd oneDNN ms", "fwd+bwd winograd ms", "winograd / oneDNN", "MODEL.WINOGRAD uses it",
                 "error oneDNN", "error winograd"], rows)


if __name__ == "__main__":
    main()
