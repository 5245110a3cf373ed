"""Mask head post-processing and target costs: the Masker (the compiled paste_masks op) against a
one-box-at-a-time paste written like maskrcnn-benchmark's ("loop"), and bitmap / polygon mask
targets for all RoIs at once against per-RoI crop + resize ("loop"). Prints a table; nothing is
asserted. "same": identical results (for the paste, up to 3 pixels within rounding of the
threshold; legacy rule only).

    PYTHONPATH=$PWD python benchmarks/mask_head.py [--device cuda]
"""
import argparse
import time

import torch
from torch.nn import functional as F

from maskrcnn.modeling.roi_heads.mask_head.inference import Masker
from maskrcnn.modeling.roi_heads.mask_head.loss import project_masks_on_boxes
from maskrcnn.structures.bounding_box import BoxList
from maskrcnn.structures.segmentation_mask import SegmentationMask


def loop_paste(masks, boxes, height, width, threshold=0.5, padding=1):
    """One detection at a time (the legacy algorithm), for comparison."""
    out = torch.zeros((masks.shape[0], 1, height, width), dtype=torch.uint8, device=masks.device)
    size = masks.shape[-1]
    scale = (size + 2 * padding) / size
    for i in range(masks.shape[0]):
        mask = F.pad(masks[i, 0].float(), (padding,) * 4)
        x1, y1, x2, y2 = boxes[i].tolist()
        cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2 * scale, (y2 - y1) / 2 * scale
        x1, y1, x2, y2 = int(cx - hw), int(cy - hh), int(cx + hw), int(cy + hh)
        w, h = max(x2 - x1 + 1, 1), max(y2 - y1 + 1, 1)
        resized = F.interpolate(mask[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        xa, ya, xb, yb = max(x1, 0), max(y1, 0), min(x2 + 1, width), min(y2 + 1, height)
        if xb > xa and yb > ya:
            out[i, 0, ya:yb, xa:xb] = (resized[ya - y1:yb - y1, xa - x1:xb - x1] > threshold)
    return out


def timed(fn, device, repeat=3):
    fn()
    best = float("inf")
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best * 1000


def random_boxes(num, width, height, generator, device):
    x1y1 = torch.rand(num, 2, generator=generator) * torch.tensor([width * 0.8, height * 0.8])
    wh = torch.rand(num, 2, generator=generator) * torch.tensor([width * 0.4, height * 0.4]) + 8
    return torch.cat([x1y1, x1y1 + wh], 1).to(device)


def ellipse(generator, width, height, points=32):
    """A flat [x0, y0, ...] polygon: an ellipse of random centre and radii inside the image."""
    centre = torch.rand(2, generator=generator) * torch.tensor([width * 0.6, height * 0.6]) + 0.2 * torch.tensor([width, height])
    radii = torch.rand(2, generator=generator) * torch.tensor([width * 0.2, height * 0.2]) + 10
    angles = torch.linspace(0, 2 * torch.pi, points + 1)[:-1]
    return torch.stack([centre[0] + radii[0] * angles.cos(), centre[1] + radii[1] * angles.sin()], 1).reshape(-1).tolist()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    height, width = 800, 1216
    print(f"device: {device}, image {width}x{height}")
    print(f"torch threads: {torch.get_num_threads()}")
    print(f"{'case':<48}{'Masker ms':>12}{'':>12}{'loop ms':>10}{'same':>6}")
    for num in (10, 100):
        masks = torch.rand(num, 1, 28, 28, generator=generator).to(device)
        boxes = random_boxes(num, width, height, generator, device)
        for legacy in (True, False):
            masker = Masker(0.5, 1, legacy_plus_one=legacy)
            pasted = masker.paste(masks, boxes, (width, height))
            if legacy:
                loop = timed(lambda: loop_paste(masks, boxes, height, width), device)
                same = str(bool((pasted != loop_paste(masks, boxes, height, width)).sum() <= 3))
            else:
                loop, same = float("nan"), ""
            name = f"Masker paste, {num} dets, {'legacy' if legacy else 'modern'} (M=28)"
            print(f"{name:<48}"
                  f"{timed(lambda: masker.paste(masks, boxes, (width, height)), device):>12.1f}{'':>12}"
                  f"{loop:>10.1f}{same:>6}")
    for num_gt, num_rois in ((4, 64), (16, 128)):
        bitmaps = (torch.rand(num_gt, height // 8, width // 8, generator=generator) > 0.5).to(torch.uint8)
        bitmaps = bitmaps.repeat_interleave(8, 1).repeat_interleave(8, 2)
        masks = SegmentationMask(bitmaps, (width, height), mode="mask")
        rois = BoxList(random_boxes(num_rois, width, height, generator, torch.device("cpu")).round(), (width, height))
        index = torch.randint(num_gt, (num_rois,), generator=generator)

        def per_roi():
            return torch.stack([masks[int(i)].crop(box).resize((28, 28)).get_mask_tensor().float()
                                for i, box in zip(index, rois.bbox)])

        def batched_targets():
            return project_masks_on_boxes(masks, rois, 28, mask_indices=index)

        print(f"{f'bitmap targets, {num_gt} gt, {num_rois} RoIs (M=28)':<48}"
              f"{timed(batched_targets, torch.device('cpu')):>12.1f}{'':>12}"
              f"{timed(per_roi, torch.device('cpu')):>10.1f}{'':>6}")

        polygons = SegmentationMask([[ellipse(generator, width, height)] for _ in range(num_gt)], (width, height))

        def per_roi_polygons():
            return torch.stack([polygons[int(i)].crop(box).resize((28, 28)).get_mask_tensor().float()
                                for i, box in zip(index, rois.bbox)])

        def batched_polygons():
            return project_masks_on_boxes(polygons, rois, 28, mask_indices=index)

        same = torch.equal(batched_polygons(), per_roi_polygons())
        print(f"{f'polygon targets, {num_gt} gt, {num_rois} RoIs (M=28)':<48}"
              f"{timed(batched_polygons, torch.device('cpu')):>12.1f}{'':>12}"
              f"{timed(per_roi_polygons, torch.device('cpu')):>10.1f}{str(same):>6}")


if __name__ == "__main__":
    main()
