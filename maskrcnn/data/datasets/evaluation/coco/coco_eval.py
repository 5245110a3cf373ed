"""COCO evaluation of predictions (list of BoxList per dataset index) with pycocotools."""
import contextlib
import io
import json
import logging
import os
from collections import OrderedDict

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.cocoeval import COCOeval

from maskrcnn.modeling.roi_heads.mask_head.inference import Masker

logger = logging.getLogger("maskrcnn.data")


def _original_size(dataset, image_index, prediction):
    info = dataset.get_img_info(image_index)
    return prediction.resize((info["width"], info["height"]))


def paste_masks_in_image(masks, boxes, height, width, threshold=0.5, padding=1):
    """Binary uint8 [N, H, W] image masks from mask probabilities `masks` [N, 1, M, M] (or
    [N, M, M]) predicted inside `boxes` [N, 4] (x1, y1, x2, y2), pasted by the model's `Masker`
    (so evaluation and inference paste identically); masks already the image size are only
    thresholded."""
    masks = masks.float().reshape(masks.shape[0], masks.shape[-2], masks.shape[-1])
    if tuple(masks.shape[-2:]) == (height, width):
        return (masks > threshold).to(torch.uint8)
    pasted = Masker(threshold=threshold, padding=padding).paste(masks[:, None], boxes, (width, height))
    return pasted[:, 0]


def prepare_for_coco_detection(predictions, dataset):
    results = []
    for image_index, prediction in enumerate(predictions):
        if len(prediction) == 0:
            continue
        image_id = dataset.id_to_img_map[image_index]
        prediction = _original_size(dataset, image_index, prediction).convert("xywh")
        boxes = prediction.bbox.tolist()
        scores = prediction.get_field("scores").tolist()
        labels = prediction.get_field("labels").tolist()
        for box, score, label in zip(boxes, scores, labels):
            results.append({"image_id": image_id, "category_id": dataset.contiguous_category_id_to_json_id[label],
                            "bbox": box, "score": score})
    return results


def prepare_for_coco_segmentation(predictions, dataset):
    results = []
    for image_index, prediction in enumerate(predictions):
        if len(prediction) == 0:
            continue
        image_id = dataset.id_to_img_map[image_index]
        info = dataset.get_img_info(image_index)
        prediction = _original_size(dataset, image_index, prediction)
        masks = paste_masks_in_image(prediction.get_field("mask"), prediction.bbox, info["height"], info["width"])
        rles = [mask_utils.encode(np.asfortranarray(m.numpy())) for m in masks]
        for rle, score, label in zip(rles, prediction.get_field("scores").tolist(), prediction.get_field("labels").tolist()):
            rle["counts"] = rle["counts"].decode("utf-8")
            results.append({"image_id": image_id, "category_id": dataset.contiguous_category_id_to_json_id[label],
                            "segmentation": rle, "score": score})
    return results


def prepare_for_coco_keypoint(predictions, dataset):
    results = []
    for image_index, prediction in enumerate(predictions):
        if len(prediction) == 0:
            continue
        image_id = dataset.id_to_img_map[image_index]
        prediction = _original_size(dataset, image_index, prediction)
        keypoints = prediction.get_field("keypoints").keypoints
        keypoints = keypoints.reshape(keypoints.shape[0], -1).tolist()
        for kps, score, label in zip(keypoints, prediction.get_field("scores").tolist(), prediction.get_field("labels").tolist()):
            results.append({"image_id": image_id, "category_id": dataset.contiguous_category_id_to_json_id[label],
                            "keypoints": kps, "score": score})
    return results


def _box_iou(a, b):
    """IoU [N, M] of xyxy boxes (legacy +1 convention, as the ground truth boxes)."""
    area_a = (a[:, 2] - a[:, 0] + 1) * (a[:, 3] - a[:, 1] + 1)
    area_b = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt + 1).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[:, None] + area_b[None] - inter)


AREA_RANGES = {"all": (0, 1e10), "small": (0, 32 ** 2), "medium": (32 ** 2, 96 ** 2), "large": (96 ** 2, 1e10)}


def evaluate_box_proposals(predictions, dataset, area="all", limit=None):
    """Average recall over IoU 0.5:0.95 of proposals (sorted by "objectness") against non-crowd
    ground truth in an area range; dict(ar, recalls, thresholds, num_pos)."""
    low, high = AREA_RANGES[area]
    overlaps, num_pos = [], 0
    for image_index, prediction in enumerate(predictions):
        image_id = dataset.id_to_img_map[image_index]
        prediction = _original_size(dataset, image_index, prediction)
        field = "objectness" if prediction.has_field("objectness") else "scores"
        order = prediction.get_field(field).sort(descending=True)[1]
        boxes = prediction.bbox[order]
        anns = [a for a in dataset.coco.imgToAnns.get(image_id, []) if a.get("iscrowd", 0) == 0]
        anns = [a for a in anns if low <= a["area"] <= high]
        num_pos += len(anns)
        if not anns or len(boxes) == 0:
            continue
        gt = torch.as_tensor([a["bbox"] for a in anns], dtype=torch.float32)
        gt[:, 2:] += gt[:, :2] - 1
        if limit is not None:
            boxes = boxes[:limit]
        iou = _box_iou(boxes.float(), gt)
        covered = torch.zeros(len(anns))
        for _ in range(min(len(boxes), len(anns))):
            best_per_gt, argmax = iou.max(dim=0)
            gt_index = int(best_per_gt.argmax())
            covered[_] = best_per_gt[gt_index]
            iou[argmax[gt_index], :] = -1
            iou[:, gt_index] = -1
        overlaps.append(covered[: min(len(boxes), len(anns))])
        if len(anns) > len(boxes):
            overlaps.append(torch.zeros(len(anns) - len(boxes)))
    overlaps = torch.cat(overlaps) if overlaps else torch.zeros(0)
    thresholds = torch.arange(0.5, 0.95 + 1e-5, 0.05)
    recalls = torch.stack([(overlaps >= t).float().sum() / max(num_pos, 1) for t in thresholds])
    return {"ar": float(recalls.mean()), "recalls": recalls.tolist(), "thresholds": thresholds.tolist(), "num_pos": num_pos}


class COCOResults(object):
    METRICS = {
        "bbox": ["AP", "AP50", "AP75", "APs", "APm", "APl"],
        "segm": ["AP", "AP50", "AP75", "APs", "APm", "APl"],
        "box_proposal": ["AR@100", "ARs@100", "ARm@100", "ARl@100", "AR@1000", "ARs@1000", "ARm@1000", "ARl@1000"],
        "keypoints": ["AP", "AP50", "AP75", "APm", "APl"],
    }

    def __init__(self, *iou_types):
        self.results = OrderedDict()
        for iou_type in iou_types:
            if iou_type not in self.METRICS:
                raise ValueError("COCOResults: unknown iou type %r (one of %s)" % (iou_type, sorted(self.METRICS)))
            self.results[iou_type] = OrderedDict((m, -1.0) for m in self.METRICS[iou_type])
        self.per_class = OrderedDict()

    def update(self, coco_eval):
        iou_type = coco_eval.params.iouType
        for position, metric in enumerate(self.METRICS[iou_type]):
            self.results[iou_type][metric] = float(coco_eval.stats[position])

    def __repr__(self):
        return json.dumps(self.results, indent=1)


def _per_class_ap(coco_eval, dataset):
    """{class name: AP@[.5:.95]} from an evaluated COCOeval (precision [T, R, K, A, M])."""
    precision = coco_eval.eval["precision"][:, :, :, 0, -1]
    table = OrderedDict()
    for k, cat_id in enumerate(coco_eval.params.catIds):
        values = precision[:, :, k]
        values = values[values > -1]
        table[dataset.categories[cat_id]] = float(values.mean()) if values.size else float("nan")
    return table


def evaluate_predictions_on_coco(coco_gt, coco_results, json_result_file, iou_type="bbox", kpt_oks_sigmas=None):
    """COCOeval of `coco_results` (COCO-format dicts) against `coco_gt`; the results are also written
    to `json_result_file` unless it is None."""
    if json_result_file is not None:
        with open(json_result_file, "w") as f:
            json.dump(coco_results, f)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(coco_results) if coco_results else type(coco_gt)()
        coco_eval = COCOeval(coco_gt, coco_dt, iou_type)
        if kpt_oks_sigmas is not None:
            coco_eval.params.kpt_oks_sigmas = np.asarray(kpt_oks_sigmas)
        coco_eval.evaluate()
        coco_eval.accumulate()
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        coco_eval.summarize()
    logger.info("%s:\n%s", iou_type, summary.getvalue())
    return coco_eval


def _keypoint_sigmas(dataset):
    for category in dataset.coco.dataset["categories"]:
        names = category.get("keypoints")
        if names and len(names) != 17:
            return [0.05] * len(names)  # pycocotools' defaults are the 17 COCO person sigmas
    return None


def do_coco_evaluation(dataset, predictions, box_only, output_folder, iou_types, expected_results=(),
                       expected_results_sigma_tol=4):
    """Returns (COCOResults, {iou type: COCOeval}); writes <iou_type>.json and coco_results.json
    (metrics + per-class AP) into output_folder when given."""
    if len(predictions) != len(dataset):
        raise ValueError("do_coco_evaluation: %d predictions for %d images" % (len(predictions), len(dataset)))
    if output_folder:
        os.makedirs(output_folder, exist_ok=True)
    if box_only:
        res = COCOResults("box_proposal")
        for limit in (100, 1000):
            for area, suffix in (("all", ""), ("small", "s"), ("medium", "m"), ("large", "l")):
                stats = evaluate_box_proposals(predictions, dataset, area=area, limit=limit)
                res.results["box_proposal"]["AR%s@%d" % (suffix, limit)] = stats["ar"]
        logger.info("box proposals: %s", res)
        check_expected_results(res, expected_results, expected_results_sigma_tol)
        if output_folder:
            with open(os.path.join(output_folder, "box_proposals.json"), "w") as f:
                json.dump(res.results, f, indent=1)
        return res, {}
    preparers = {"bbox": prepare_for_coco_detection, "segm": prepare_for_coco_segmentation,
                 "keypoints": prepare_for_coco_keypoint}
    res = COCOResults(*iou_types)
    coco_evals = {}
    for iou_type in iou_types:
        coco_results = preparers[iou_type](predictions, dataset)
        json_file = os.path.join(output_folder, iou_type + ".json") if output_folder else None
        sigmas = _keypoint_sigmas(dataset) if iou_type == "keypoints" else None
        coco_eval = evaluate_predictions_on_coco(dataset.coco, coco_results, json_file, iou_type, sigmas)
        res.update(coco_eval)
        res.per_class[iou_type] = _per_class_ap(coco_eval, dataset)
        logger.info("%s per-class AP: %s", iou_type,
                    ", ".join("%s %.3f" % kv for kv in res.per_class[iou_type].items()))
        coco_evals[iou_type] = coco_eval
    check_expected_results(res, expected_results, expected_results_sigma_tol)
    if output_folder:
        with open(os.path.join(output_folder, "coco_results.json"), "w") as f:
            json.dump({"results": res.results, "per_class_AP": res.per_class}, f, indent=1)
    return res, coco_evals


def check_expected_results(results, expected_results, sigma_tol):
    """expected_results: [(iou_type, metric, mean, std)]; logs and returns False when a metric
    lies outside mean +- sigma_tol * std."""
    ok = True
    for task, metric, mean, std in expected_results or ():
        actual = results.results[task][metric]
        low, high = mean - sigma_tol * std, mean + sigma_tol * std
        passed = low < actual < high
        message = "%s > %s sanity check (actual vs. expected): %.3f vs. mean=%.4f, std=%.4f, range=(%.4f, %.4f)" % (
            task, metric, actual, mean, std, low, high)
        if passed:
            logger.info("PASS: " + message)
        else:
            ok = False
            logger.error("FAIL: " + message)
    return ok
