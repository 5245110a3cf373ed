"""Training-target preparation time of the RPN, box and mask losses (IoU matching, labels,
regression / mask targets): ``prepare_targets`` called once for all images ("batch") beside the
same call made image by image ("per image", the Python loop the losses used to run).

    PYTHONPATH=$PWD python benchmarks/target_matching.py [--images 2] [--repeats 7]

Inputs (seeded): images of 800 x 1216 (the second of each pair 800 x 1088, so the padded batched
path is exercised), FPN anchors (strides 4..64, 3 ratios, about 240k per image), 2000 proposals
and 10 ground-truth boxes with polygon masks per image, the proposals scattered around the ground
truth so that the box and mask heads see positives. "same" says the two give identical outputs.
The script runs unchanged against an older checkout (its own prepare_targets, both columns).
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import format_ms, print_table, time_alternating  # noqa: E402

from maskrcnn.modeling.balanced_positive_negative_sampler import BalancedPositiveNegativeSampler  # noqa: E402
from maskrcnn.modeling.box_coder import BoxCoder  # noqa: E402
from maskrcnn.modeling.matcher import Matcher  # noqa: E402
from maskrcnn.modeling.roi_heads.box_head.loss import FastRCNNLossComputation  # noqa: E402
from maskrcnn.modeling.roi_heads.mask_head.loss import MaskRCNNLossComputation  # noqa: E402
from maskrcnn.modeling.rpn.anchor_generator import AnchorGenerator  # noqa: E402
from maskrcnn.modeling.rpn.loss import RPNLossComputation, generate_rpn_labels  # noqa: E402
from maskrcnn.structures.bounding_box import BoxList  # noqa: E402
from maskrcnn.structures.boxlist_ops import cat_boxlist  # noqa: E402
from maskrcnn.structures.segmentation_mask import SegmentationMask  # noqa: E402

STRIDES = (4, 8, 16, 32, 64)


def make_image(width, height, num_gt, num_proposals, anchor_generator, generator):
    """(anchors BoxList with "visibility", target BoxList with "labels" / "masks", proposals)."""
    centres = torch.rand(num_gt, 2, generator=generator) * torch.tensor([width * 0.8, height * 0.8]) + 40
    sizes = 24 + torch.rand(num_gt, 2, generator=generator) * 300
    gt = torch.cat([centres - sizes / 2, centres + sizes / 2], dim=1)
    gt = BoxList(gt, (width, height)).clip_to_image(remove_empty=False)
    polygons = []
    for x1, y1, x2, y2 in gt.bbox.tolist():  # a hexagon inside each box
        cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
        polygons.append([[cx - rx, cy, cx - rx / 2, cy - ry, cx + rx / 2, cy - ry, cx + rx, cy,
                          cx + rx / 2, cy + ry, cx - rx / 2, cy + ry]])
    gt.add_field("labels", torch.randint(1, 81, (num_gt,), generator=generator))
    gt.add_field("masks", SegmentationMask(polygons, (width, height)))

    # proposals: jittered copies of the ground truth, and random boxes
    near = num_proposals // 2
    picked = gt.bbox[torch.randint(0, num_gt, (near,), generator=generator)]
    extent = (picked[:, 2:] - picked[:, :2]).repeat(1, 2)
    jittered = picked + (torch.rand(near, 4, generator=generator) - 0.5) * 0.5 * extent
    centres = torch.rand(num_proposals - near, 2, generator=generator) * torch.tensor([width, height])
    sizes = 16 + torch.rand(num_proposals - near, 2, generator=generator) * 240
    scattered = torch.cat([centres - sizes / 2, centres + sizes / 2], dim=1)
    boxes = torch.cat([jittered, scattered])
    boxes = torch.stack([torch.minimum(boxes[:, 0], boxes[:, 2]), torch.minimum(boxes[:, 1], boxes[:, 3]),
                         torch.maximum(boxes[:, 0], boxes[:, 2]), torch.maximum(boxes[:, 1], boxes[:, 3])], dim=1)
    proposals = BoxList(boxes, (width, height)).clip_to_image(remove_empty=False)

    grid_sizes = [((height + s - 1) // s, (width + s - 1) // s) for s in STRIDES]
    levels = []
    for level in anchor_generator.grid_anchors(grid_sizes):
        boxlist = BoxList(level, (width, height))
        anchor_generator.add_visibility_to(boxlist)
        levels.append(boxlist)
    return cat_boxlist(levels), gt, proposals


def make_inputs(num_images, num_gt=10, num_proposals=2000, seed=0):
    generator = torch.Generator().manual_seed(seed)
    anchor_generator = AnchorGenerator((32, 64, 128, 256, 512), (0.5, 1.0, 2.0), STRIDES)
    images = [make_image(1216 if i % 2 == 0 else 1088, 800, num_gt, num_proposals, anchor_generator, generator)
              for i in range(num_images)]
    return tuple(list(column) for column in zip(*images))


def losses():
    rpn = RPNLossComputation(Matcher(0.7, 0.3, allow_low_quality_matches=True),
                             BalancedPositiveNegativeSampler(256, 0.5), BoxCoder((1.0, 1.0, 1.0, 1.0)),
                             generate_rpn_labels)
    box = FastRCNNLossComputation(Matcher(0.5, 0.5), BalancedPositiveNegativeSampler(512, 0.25),
                                  BoxCoder((10.0, 10.0, 5.0, 5.0)))
    mask = MaskRCNNLossComputation(Matcher(0.5, 0.5), 28)
    return rpn, box, mask


def same(first, second):
    """Identical nested lists / tuples of tensors."""
    if isinstance(first, torch.Tensor):
        return first.dtype == second.dtype and first.shape == second.shape and torch.equal(first, second)
    return len(first) == len(second) and all(same(a, b) for a, b in zip(first, second))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    anchors, targets, proposals = make_inputs(args.images)
    rpn, box, mask = losses()
    print(f"{args.images} images, {len(anchors[0])} anchors / {len(proposals[0])} proposals / "
          f"{len(targets[0])} ground truths per image, 1 thread")

    def per_image(prepare, predictions):
        def run():
            results = [prepare([p], [t]) for p, t in zip(predictions, targets)]
            return tuple([r[k][0] for r in results] for k in range(2))
        return run

    cases = [
        ("RPN prepare_targets", rpn.prepare_targets, anchors),
        ("box head prepare_targets", box.prepare_targets, proposals),
        ("mask head prepare_targets", mask.prepare_targets, proposals),
    ]
    rows = []
    for name, prepare, predictions in cases:
        functions = {"batch": lambda: prepare(predictions, targets), "per image": per_image(prepare, predictions)}
        seconds = time_alternating(functions, args.repeats)
        agree = same(functions["batch"](), functions["per image"]())
        rows.append([name, format_ms(seconds["batch"]), format_ms(seconds["per image"]),
                     f"{seconds['per image'] / seconds['batch']:.2f}x", "yes" if agree else "NO"])
    print_table(["targets", "batch", "per image", "per image / batch", "same"], rows)


if __name__ == "__main__":
    main()
