"""PASCAL VOC detection AP (per class and mean), with the 07 (11-point) or 12 (area) metric."""
import json
import logging
import os
from collections import defaultdict

import numpy as np

logger = logging.getLogger("maskrcnn.data")


def _iou(a, b, legacy_plus_one=True):
    """IoU [N, M] of xyxy boxes a [N, 4], b [M, 4] (numpy)."""
    offset = 1.0 if legacy_plus_one else 0.0
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt + offset, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = np.prod(a[:, 2:] - a[:, :2] + offset, axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2] + offset, axis=1)
    return inter / (area_a[:, None] + area_b[None] - inter)


def calc_detection_voc_prec_rec(pred_boxlists, gt_boxlists, iou_thresh=0.5, legacy_plus_one=True):
    """Per-class precision / recall arrays (lists indexed by label; None for absent labels).

    Each image's detections are matched greedily by score to unmatched ground truth with IoU >=
    iou_thresh; ground truth flagged "difficult" neither counts as a positive nor penalises a match.
    """
    n_pos = defaultdict(int)
    scores = defaultdict(list)
    matches = defaultdict(list)
    for pred, gt in zip(pred_boxlists, gt_boxlists):
        pred_boxes = pred.bbox.numpy()
        pred_labels = pred.get_field("labels").numpy()
        pred_scores = pred.get_field("scores").numpy()
        gt_boxes = gt.bbox.numpy()
        gt_labels = gt.get_field("labels").numpy()
        gt_difficult = gt.get_field("difficult").numpy().astype(bool) if gt.has_field("difficult") \
            else np.zeros(len(gt_labels), dtype=bool)
        for label in np.unique(np.concatenate([pred_labels, gt_labels]).astype(int)):
            p = pred_labels == label
            p_boxes, p_scores = pred_boxes[p], pred_scores[p]
            order = p_scores.argsort()[::-1]
            p_boxes, p_scores = p_boxes[order], p_scores[order]
            g = gt_labels == label
            g_boxes, g_difficult = gt_boxes[g], gt_difficult[g]
            n_pos[label] += int((~g_difficult).sum())
            scores[label].extend(p_scores.tolist())
            if len(p_boxes) == 0:
                continue
            if len(g_boxes) == 0:
                matches[label].extend([0] * len(p_boxes))
                continue
            iou = _iou(p_boxes, g_boxes, legacy_plus_one)
            best = iou.argmax(axis=1)
            best[iou.max(axis=1) < iou_thresh] = -1
            taken = np.zeros(len(g_boxes), dtype=bool)
            for gt_index in best:
                if gt_index < 0:
                    matches[label].append(0)
                elif g_difficult[gt_index]:
                    matches[label].append(-1)
                elif not taken[gt_index]:
                    matches[label].append(1)
                    taken[gt_index] = True
                else:
                    matches[label].append(0)
    n_fg = max(list(n_pos) + list(scores) + [0]) + 1
    precision, recall = [None] * n_fg, [None] * n_fg
    for label in set(n_pos) | set(scores):
        order = np.array(scores[label]).argsort()[::-1]
        match = np.array(matches[label], dtype=np.int8)[order]
        tp = np.cumsum(match == 1)
        fp = np.cumsum(match == 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision[label] = tp / (fp + tp)
            if n_pos[label] > 0:
                recall[label] = tp / n_pos[label]
    return precision, recall


def calc_detection_voc_ap(prec, rec, use_07_metric=False):
    """AP per class from precision / recall lists; NaN where a class has no positives."""
    ap = np.full(len(prec), np.nan)
    for label in range(len(prec)):
        if prec[label] is None or rec[label] is None:
            continue
        if use_07_metric:
            value = 0.0
            for t in np.arange(0.0, 1.1, 0.1):
                above = rec[label] >= t
                value += (np.max(np.nan_to_num(prec[label])[above]) if above.any() else 0.0) / 11
            ap[label] = value
        else:
            mpre = np.concatenate(([0], np.nan_to_num(prec[label]), [0]))
            mrec = np.concatenate(([0], rec[label], [1]))
            mpre = np.maximum.accumulate(mpre[::-1])[::-1]
            changes = np.where(mrec[1:] != mrec[:-1])[0]
            ap[label] = np.sum((mrec[changes + 1] - mrec[changes]) * mpre[changes + 1])
    return ap


def eval_detection_voc(pred_boxlists, gt_boxlists, iou_thresh=0.5, use_07_metric=False, legacy_plus_one=True):
    """{"ap": per-class AP array (index = label), "map": mean over classes with positives}."""
    if len(pred_boxlists) != len(gt_boxlists):
        raise ValueError("eval_detection_voc: %d predictions for %d ground truths" % (len(pred_boxlists), len(gt_boxlists)))
    prec, rec = calc_detection_voc_prec_rec(pred_boxlists, gt_boxlists, iou_thresh, legacy_plus_one)
    ap = calc_detection_voc_ap(prec, rec, use_07_metric)
    return {"ap": ap, "map": float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan")}


def do_voc_evaluation(dataset, predictions, output_folder, use_07_metric=True):
    pred_boxlists, gt_boxlists = [], []
    for image_index, prediction in enumerate(predictions):
        info = dataset.get_img_info(image_index)
        pred_boxlists.append(prediction.resize((info["width"], info["height"])))
        gt_boxlists.append(dataset.get_groundtruth(image_index))
    result = eval_detection_voc(pred_boxlists, gt_boxlists, iou_thresh=0.5, use_07_metric=use_07_metric)
    lines = ["mAP: %.4f" % result["map"]]
    for label, ap in enumerate(result["ap"]):
        if label == 0 or np.isnan(ap):
            continue
        lines.append("%-14s: %.4f" % (dataset.map_class_id_to_class_name(label), ap))
    logger.info("\n".join(lines))
    if output_folder:
        os.makedirs(output_folder, exist_ok=True)
        with open(os.path.join(output_folder, "result.json"), "w") as f:
            json.dump({"map": result["map"], "ap": [None if np.isnan(a) else float(a) for a in result["ap"]]}, f, indent=1)
    return result
