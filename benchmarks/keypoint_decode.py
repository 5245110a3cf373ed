"""Keypoint heatmap decoding: the compiled op (`maskrcnn.layers.heatmaps_to_keypoints`, all
detections in one call, resized values evaluated without storing the resized maps) beside the
per-detection loop it replaced (one F.interpolate to the box's size, then torch.argmax), on the
same inputs. Prints a table; nothing is asserted. "same": identical keypoints and scores.

    PYTHONPATH=$PWD python benchmarks/keypoint_decode.py [--threads 1] [--repeats 5]

Cases: 100 detections x 17 keypoints, 56 x 56 heatmaps (Keypoint R-CNN's), box sides uniform in
100..300 pixels; and 10 detections of the same kind.
"""
import argparse
import os
import sys

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from common import format_ms, print_table, time_alternating  # noqa: E402

from maskrcnn.layers import heatmaps_to_keypoints  # noqa: E402
from tests.layers.test_heatmaps_to_keypoints import loop_heatmaps_to_keypoints  # noqa: E402


def make_inputs(num, num_keypoints, size, generator):
    maps = torch.randn(num, num_keypoints, size, size, generator=generator) * 4
    corners = torch.rand(num, 2, generator=generator) * 800
    sides = 100 + torch.rand(num, 2, generator=generator) * 200
    return maps, torch.cat([corners, corners + sides], dim=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    print(f"torch threads: {torch.get_num_threads()}, CPU capability: {torch.backends.cpu.get_cpu_capability()}")
    rows = []
    for num in (100, 10):
        maps, rois = make_inputs(num, 17, 56, generator)
        times = time_alternating({
            "op": lambda: heatmaps_to_keypoints(maps, rois),
            "loop": lambda: loop_heatmaps_to_keypoints(maps, rois),
        }, args.repeats)
        op_xy, op_scores = heatmaps_to_keypoints(maps, rois)
        loop_xy, loop_scores = loop_heatmaps_to_keypoints(maps, rois)
        same = torch.equal(op_xy, loop_xy) and torch.equal(op_scores, loop_scores)
        rows.append([f"{num} dets x 17 kps, 56x56, boxes 100-300 px", format_ms(times["op"]),
                     format_ms(times["loop"]), f"{times['op'] / times['loop']:.3f}", str(same)])
    print_table(["case", "op ms", "loop ms", "op / loop", "same"], rows)


if __name__ == "__main__":
    main()
