"""CPU inference path, piece by piece: what BN folding, channels-last and the mask post-processing
cost or save, each measured before/after in one process, alternating (median of --repeats).

    PYTHONPATH=$PWD python benchmarks/inference_path.py [--size 800x1216] [--repeats 5] [--threads 2]

Rows (random weights, one image of --size):
  * backbone R-50-FPN: as built / BN folded / BN folded + channels-last (model and input);
  * Mask R-CNN R-50-FPN eval forward (inference_mode, 100 detections): as built / BN folded /
    BN folded + channels-last weights (maskrcnn.modeling.inference_setup.optimize_for_inference);
  * mask post-processing of --detections detections (81 classes, M = 28): MaskPostProcessor with
    the Masker (sigmoid of the predicted class, paste into the image).
The full-model comparison with torchvision is benchmarks/model.py.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import format_ms, print_table, time_alternating  # noqa: E402

from maskrcnn.config import cfg as global_cfg  # noqa: E402
from maskrcnn.modeling.backbone import build_backbone  # noqa: E402
from maskrcnn.modeling.detector import build_detection_model  # noqa: E402
from maskrcnn.modeling.fold_batch_norm import fold_batch_norms  # noqa: E402
from maskrcnn.modeling.inference_setup import optimize_for_inference  # noqa: E402
from maskrcnn.modeling.roi_heads.mask_head.inference import Masker, MaskPostProcessor  # noqa: E402
from maskrcnn.structures.bounding_box import BoxList  # noqa: E402

CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs",
                      "e2e_mask_rcnn_R_50_FPN_1x.yaml")


def backbone_rows(cfg, image, repeats):
    model = build_backbone(cfg).eval()
    folded = fold_batch_norms(model)
    folded_cl = fold_batch_norms(model).to(memory_format=torch.channels_last)
    image_cl = image.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        times = time_alternating({
            "as built": lambda: model(image),
            "BN folded": lambda: folded(image),
            "BN folded + channels-last": lambda: folded_cl(image_cl),
        }, repeats)
    base = times["as built"]
    return [[f"backbone R-50-FPN, {name}", format_ms(t), f"{t / base:.2f}"] for name, t in times.items()]


def model_rows(cfg, image, repeats):
    model = build_detection_model(cfg).eval()
    folded = optimize_for_inference(model, channels_last=False)
    folded_cl = optimize_for_inference(model)

    def run(net):
        with torch.inference_mode():
            return net([image[0]])

    times = time_alternating({"as built": lambda: run(model), "BN folded": lambda: run(folded),
                              "BN folded + channels-last": lambda: run(folded_cl)}, repeats)
    base = times["as built"]
    return [[f"Mask R-CNN R-50-FPN eval, {name}", format_ms(t), f"{t / base:.2f}"] for name, t in times.items()]


def post_processing_rows(size, detections, repeats):
    height, width = size
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(detections, 81, 28, 28, generator=generator)
    xy = torch.rand(detections, 2, generator=generator) * torch.tensor([width * 0.8, height * 0.8])
    wh = torch.rand(detections, 2, generator=generator) * torch.tensor([width * 0.4, height * 0.4]) + 8
    boxes = BoxList(torch.cat([xy, xy + wh], 1), (width, height))
    boxes.add_field("labels", torch.randint(1, 81, (detections,), generator=generator))
    rows = []
    for legacy in (True, False):
        post = MaskPostProcessor(Masker(0.5, 1, legacy_plus_one=legacy))
        with torch.inference_mode():
            times = time_alternating({"post": lambda: post(logits, [boxes])}, repeats)
        rows.append([f"mask post-processing, {detections} dets, {'legacy' if legacy else 'modern'}",
                     format_ms(times["post"]), "-"])
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="800x1216", help="HxW of the image")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--detections", type=int, default=100)
    parser.add_argument("--skip-model", action="store_true", help="leave out the full-model rows")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size = tuple(int(v) for v in args.size.split("x"))
    cfg = global_cfg.clone()
    cfg.merge_from_file(CONFIG)
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.WEIGHT", "", "INPUT.MIN_SIZE_TEST", min(size),
                         "INPUT.MAX_SIZE_TEST", max(size),
                         "MODEL.ROI_HEADS.SCORE_THRESH", 0.0])  # random weights: keep 100 detections
    torch.manual_seed(0)
    image = torch.randn(1, 3, *size)
    print(f"image {size[0]}x{size[1]}, {args.threads} threads, median of {args.repeats}")
    rows = backbone_rows(cfg, image, args.repeats)
    if not args.skip_model:
        rows += model_rows(cfg, image, args.repeats)
    rows += post_processing_rows(size, args.detections, args.repeats)
    print_table(["case", "ms", "vs first of its group"], rows)


if __name__ == "__main__":
    main()
