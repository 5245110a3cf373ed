"""RetinaNet post-processing time: our vectorised RetinaNetPostProcessor against the same selection
computed the way maskrcnn-benchmark does it (sigmoid of every logit after a permuted copy, a loop
over images per level, and one NMS per class and image).

    python benchmarks/retinanet_postprocess.py                       # 800x1216, 1 and 4 images, CPU
    python benchmarks/retinanet_postprocess.py --images 1,2 --device cuda --repeats 20

Head outputs are random: logits ~ N(--logit-mean, 1) (default -6: about 0.1 % of the (anchor,
class) pairs above INFERENCE_TH = 0.05, as for a trained model), deltas ~ N(0, 0.2); 80 classes,
9 anchors per location, levels P3-P7 (strides 8-128), PRE_NMS_TOP_N 1000, NMS 0.5,
DETECTIONS_PER_IMG 100. Times are medians of --repeats after one warm-up, both variants
alternating. Both variants return the same detections (checked before timing).
"""
import argparse
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import format_ms, print_table, time_alternating  # noqa: E402

from maskrcnn.layers import nms  # noqa: E402
from maskrcnn.modeling.rpn.retinanet.inference import RetinaNetPostProcessor  # noqa: E402
from maskrcnn.modeling.rpn.utils import permute_and_flatten  # noqa: E402
from maskrcnn.structures.bounding_box import BoxList  # noqa: E402


class PerClassLoopPostProcessor(RetinaNetPostProcessor):
    """maskrcnn-benchmark's algorithm: per level a sigmoid over every (anchor, class) and a loop over
    the images; after merging the levels, per image one NMS per class, then the cap."""

    def forward_for_single_feature_map(self, anchors, box_cls, box_regression):
        N, _, H, W = box_cls.shape
        A = box_regression.shape[1] // 4
        C = box_cls.shape[1] // A
        scores = permute_and_flatten(box_cls, N, A, C, H, W).sigmoid()
        deltas = permute_and_flatten(box_regression, N, A, 4, H, W)
        results = []
        for per_scores, per_deltas, per_anchors in zip(scores, deltas, anchors):
            candidates = per_scores > self.pre_nms_thresh
            top = per_scores[candidates].topk(min(int(candidates.sum()), self.pre_nms_top_n), sorted=False)
            loc_cls = candidates.nonzero()[top.indices]
            boxes = self.box_coder.decode(per_deltas[loc_cls[:, 0]], per_anchors.bbox[loc_cls[:, 0]])
            boxlist = BoxList(boxes, per_anchors.size)
            boxlist.add_field("labels", loc_cls[:, 1] + 1)
            boxlist.add_field("scores", top.values)
            results.append(boxlist.clip_to_image(remove_empty=False))
        return results

    def select_over_all_levels(self, boxlists):
        results = []
        for boxlist in boxlists:
            scores, labels = boxlist.get_field("scores"), boxlist.get_field("labels")
            boxes, kept_scores, kept_labels = [], [], []
            for j in range(1, self.num_classes):
                idx = (labels == j).nonzero().squeeze(1)
                keep = idx[nms(boxlist.bbox[idx], scores[idx], self.nms_thresh)]
                boxes.append(boxlist.bbox[keep])
                kept_scores.append(scores[keep])
                kept_labels.append(labels[keep])
            scores = torch.cat(kept_scores)
            order = scores.argsort(descending=True)[: self.fpn_post_nms_top_n]
            result = BoxList(torch.cat(boxes)[order], boxlist.size)
            result.add_field("scores", scores[order])
            result.add_field("labels", torch.cat(kept_labels)[order])
            results.append(result)
        return results


def make_inputs(num_images, height, width, logit_mean, device, num_classes=80, num_anchors=9):
    anchors_per_level, box_cls, box_reg = [], [], []
    for stride in (8, 16, 32, 64, 128):
        H, W = math.ceil(height / stride), math.ceil(width / stride)
        ys, xs = torch.meshgrid(torch.arange(H) * stride, torch.arange(W) * stride, indexing="ij")
        centres = torch.stack([xs, ys], dim=-1).reshape(-1, 1, 2).float()
        sizes = stride * 4 * torch.tensor([1.0, 1.26, 1.59]).repeat(3)[None, :, None] * torch.ones(1, 1, 2)
        boxes = torch.cat([centres - sizes / 2, centres + sizes / 2 - 1], dim=-1).reshape(-1, 4)
        anchors_per_level.append(BoxList(boxes.to(device), (width, height)))
        box_cls.append(torch.randn(num_images, num_anchors * (num_classes - 1), H, W, device=device) + logit_mean)
        box_reg.append(torch.randn(num_images, num_anchors * 4, H, W, device=device) * 0.2)
    return [anchors_per_level] * num_images, box_cls, box_reg


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="800x1216")
    parser.add_argument("--images", default="1,4")
    parser.add_argument("--logit-mean", type=float, default=-6.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    height, width = (int(v) for v in args.size.split("x"))
    kwargs = dict(pre_nms_thresh=0.05, pre_nms_top_n=1000, nms_thresh=0.5, fpn_post_nms_top_n=100, min_size=0,
                  num_classes=81)
    ours, loop = RetinaNetPostProcessor(**kwargs).eval(), PerClassLoopPostProcessor(**kwargs).eval()
    rows = []
    for num_images in (int(v) for v in args.images.split(",")):
        inputs = make_inputs(num_images, height, width, args.logit_mean, args.device)
        with torch.no_grad():
            for a, b in zip(ours(*inputs), loop(*inputs)):
                assert torch.equal(a.get_field("scores"), b.get_field("scores")), "variants disagree"
            times = time_alternating({"ours": lambda: ours(*inputs), "loop": lambda: loop(*inputs)},
                                     args.repeats, device=args.device)
        detections = sum(len(r) for r in ours(*inputs))
        rows.append([num_images, args.size, detections, format_ms(times["ours"]), format_ms(times["loop"]),
                     f"{times['loop'] / times['ours']:.2f}x"])
    print(f"RetinaNet post-processing on {args.device} ({args.threads} threads), ms (median of {args.repeats})")
    print_table(["images", "size", "detections", "ours (batched NMS)", "maskrcnn-benchmark style", "speed-up"], rows)


if __name__ == "__main__":
    main()
