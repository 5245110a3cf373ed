"""Box-head post-processing time: maskrcnn's PostProcessor (one batched NMS call for all images
and classes) beside a per-image, per-class loop (maskrcnn-benchmark's algorithm, written here with
the same NMS op), on the same inputs.

    python benchmarks/box_post_processor.py

Cases: 1 / 2 / 8 images x 1000 RoIs (the FPN test-time proposal count) x 81 classes, score
threshold 0.05, NMS 0.5, 100 detections per image; logits scaled so that a realistic share of
(RoI, class) pairs passes the threshold. The outputs are checked to be the same set of detections.
"""
import argparse
import os
import sys

import torch
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import format_ms, print_table, time_alternating  # noqa: E402

from maskrcnn.layers import nms  # noqa: E402
from maskrcnn.modeling.box_coder import BoxCoder  # noqa: E402
from maskrcnn.modeling.roi_heads.box_head.inference import PostProcessor  # noqa: E402
from maskrcnn.structures.bounding_box import BoxList  # noqa: E402
from maskrcnn.structures.boxlist_ops import cat_boxlist  # noqa: E402

IMAGE_W, IMAGE_H = 1216, 800
NUM_CLASSES = 81


def make_inputs(num_images, rois_per_image, generator):
    proposals = []
    for _ in range(num_images):
        centres = torch.rand(rois_per_image, 2, generator=generator) * torch.tensor([IMAGE_W, IMAGE_H])
        sizes = 16 + torch.rand(rois_per_image, 2, generator=generator) * 240
        boxes = torch.cat([centres - sizes / 2, centres + sizes / 2], dim=1)
        proposals.append(BoxList(boxes, (IMAGE_W, IMAGE_H)).clip_to_image(remove_empty=False))
    total = num_images * rois_per_image
    logits = torch.randn(total, NUM_CLASSES, generator=generator) * 2.5
    deltas = torch.randn(total, 4 * NUM_CLASSES, generator=generator) * 0.5
    return logits, deltas, proposals


def per_class_loop(post, logits, deltas, proposals):
    """maskrcnn-benchmark's filter_results: a Python loop over images and classes."""
    probs = F.softmax(logits, -1)
    decoded = post.box_coder.decode(deltas, torch.cat([p.bbox for p in proposals]))
    results, start = [], 0
    for props in proposals:
        n = len(props)
        boxlist = BoxList(decoded[start:start + n].reshape(-1, 4), props.size)
        boxlist = boxlist.clip_to_image(remove_empty=False)
        boxes = boxlist.bbox.reshape(n, -1)
        scores = probs[start:start + n]
        start += n
        per_class = []
        for j in range(1, NUM_CLASSES):
            inds = torch.nonzero(scores[:, j] > post.score_thresh).squeeze(1)
            class_boxes = BoxList(boxes[inds, j * 4:(j + 1) * 4], props.size)
            class_scores = scores[inds, j]
            keep = nms(class_boxes.bbox, class_scores, post.nms)
            class_boxes = class_boxes[keep]
            class_boxes.add_field("scores", class_scores[keep])
            class_boxes.add_field("labels", torch.full((len(keep),), j, dtype=torch.int64))
            per_class.append(class_boxes)
        result = cat_boxlist(per_class)
        if len(result) > post.detections_per_img:
            top = torch.topk(result.get_field("scores"), post.detections_per_img).indices
            result = result[top]
        results.append(result)
    return results


def same_detections(a, b):
    for x, y in zip(a, b):
        kx = sorted(zip(x.get_field("scores").tolist(), x.get_field("labels").tolist()))
        ky = sorted(zip(y.get_field("scores").tolist(), y.get_field("labels").tolist()))
        if kx != ky:
            return False
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    post = PostProcessor(score_thresh=0.05, nms=0.5, detections_per_img=100, box_coder=BoxCoder((10, 10, 5, 5)))
    rows = []
    for num_images in (1, 2, 8):
        generator = torch.Generator().manual_seed(num_images)
        logits, deltas, proposals = make_inputs(num_images, 1000, generator)
        candidates = int((F.softmax(logits, -1)[:, 1:] > 0.05).sum())
        with torch.no_grad():
            ours = post((logits, deltas), proposals)
            loop = per_class_loop(post, logits, deltas, proposals)
            times = time_alternating(
                {
                    "batched": lambda: post((logits, deltas), proposals),
                    "loop": lambda: per_class_loop(post, logits, deltas, proposals),
                },
                repeats=args.repeats,
            )
        rows.append([
            f"{num_images} x 1000 RoIs", candidates, format_ms(times["batched"]), format_ms(times["loop"]),
            f"{times['loop'] / times['batched']:.1f}x", "yes" if same_detections(ours, loop) else "NO",
        ])
    print(f"CPU, {torch.get_num_threads()} threads, {NUM_CLASSES} classes")
    print_table(["case", "candidates", "batched (ms)", "per-class loop (ms)", "speed-up", "same output"], rows)


if __name__ == "__main__":
    main()
