"""Inference over a test set: predictions for every image (batched, on one or many processes),
gathered on the main process, saved, then evaluated.

``inference`` follows maskrcnn-benchmark's signature; ``run_test`` is the entry point that
tools/test_net.py and the trainer's periodic evaluation share: every DATASETS.TEST set, the iou
types the model's heads produce, results under OUTPUT_DIR/inference/<dataset>/.
"""
import logging
import os
import sys
from collections import OrderedDict

import torch

from maskrcnn.data.datasets.evaluation import evaluate
from maskrcnn.utils.comm import all_gather, get_world_size, is_main_process, synchronize
from maskrcnn.utils.timer import Timer, get_time_str

from .bbox_aug import im_detect_bbox_aug

__all__ = [
    "compute_on_dataset", "inference", "run_test", "iou_types_from_cfg", "results_to_dict",
    "format_results_table",
]

logger = logging.getLogger("maskrcnn.inference")


def _unwrap(model):
    """The module inside DistributedDataParallel / DataParallel (inference needs no gradient sync)."""
    return model.module if isinstance(
        model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)) else model


def _progress_bar(iterable, total, enabled):
    """tqdm over `iterable` when `enabled` is True, or None (the default) and stdout is a
    terminal on the main process; `iterable` unchanged otherwise."""
    if enabled is None:
        enabled = is_main_process() and sys.stdout.isatty()
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc="inference", unit="batch", dynamic_ncols=True)


def compute_on_dataset(model, data_loader, device, bbox_aug=False, timer=None, progress=None, cfg=None):
    """Run `model` over `data_loader` (this process's share of the images).

    Arguments:
        model: the detector, in eval mode; called with an ImageList, returns list[BoxList].
        data_loader: yields (images, targets, indices): an ImageList batch (or, with `bbox_aug`,
            a tuple of raw BGR uint8 images [H, W, 3], as make_data_loader gives when
            TEST.BBOX_AUG.ENABLED), targets (unused) and the dataset indices of the images.
        device: where the batches go (torch.device or string).
        bbox_aug: test-time augmentation (engine/bbox_aug.py, read from `cfg`).
        timer: optional Timer; each batch's forward (to results on the CPU) is timed with tic/toc.
        progress: True / False, or None for a progress bar only on a terminal on the main process.
        cfg: the config TTA reads (default: the global maskrcnn.config.cfg).
    Returns:
        {dataset index: BoxList on the CPU}.
    """
    results = {}
    device = torch.device(device)
    total = len(data_loader) if hasattr(data_loader, "__len__") else None
    # no_grad rather than inference_mode: inference-mode tensors could never be changed in place
    # afterwards (BoxList.clip_to_image clamps in place), and the predictions are handed on
    with torch.no_grad():
        for images, _, indices in _progress_bar(data_loader, total, progress):
            if timer is not None:
                timer.tic()
            if bbox_aug:
                output = im_detect_bbox_aug(model, images, device, cfg=cfg)
            else:
                output = model(images.to(device))
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            output = [boxlist.to(torch.device("cpu")) for boxlist in output]
            if timer is not None:
                timer.toc()
            if len(output) != len(indices):
                raise RuntimeError("inference: the model returned %d results for a batch of %d images"
                                   % (len(output), len(indices)))
            results.update({int(index): boxlist for index, boxlist in zip(indices, output)})
    return results


def _accumulate_predictions_from_multiple_gpus(predictions_per_gpu, num_images):
    """All processes' {index: BoxList} gathered on the main process as a list ordered by index
    (None on the other processes). A distributed sampler may hand an image to two processes
    (padding); either copy serves. Missing indices are an error naming them."""
    all_predictions = all_gather(predictions_per_gpu)
    if not is_main_process():
        return None
    predictions = {}
    for part in all_predictions:
        predictions.update(part)
    missing = sorted(set(range(num_images)) - set(predictions))
    unexpected = sorted(set(predictions) - set(range(num_images)))
    if missing or unexpected:
        raise RuntimeError(
            "inference: predictions gathered from %d process(es) do not cover the dataset's %d images: "
            "missing indices %s%s" % (
                get_world_size(), num_images, _abbreviate(missing),
                ("; unexpected indices %s" % _abbreviate(unexpected)) if unexpected else ""))
    return [predictions[i] for i in range(num_images)]


def _abbreviate(indices, limit=20):
    shown = ", ".join(str(i) for i in indices[:limit])
    return "[%s%s]" % (shown, ", ... (%d in all)" % len(indices) if len(indices) > limit else "")


def inference(
    model,
    data_loader,
    dataset_name,
    iou_types=("bbox",),
    box_only=False,
    bbox_aug=False,
    device="cpu",
    expected_results=(),
    expected_results_sigma_tol=4,
    output_folder=None,
    progress=None,
    cfg=None,
):
    """Predict every image of `data_loader.dataset`, gather the predictions on the main process,
    save them to `output_folder`/predictions.pth (torch.save of the list of BoxLists, one per
    dataset index) and evaluate them.

    Arguments (beyond compute_on_dataset's):
        dataset_name: for the log.
        iou_types: evaluations to run ("bbox", "segm", "keypoints").
        box_only: evaluate proposals (average recall, iou type "box_proposal") instead.
        expected_results, expected_results_sigma_tol: TEST.EXPECTED_RESULTS regression check.
        output_folder: where predictions.pth and the evaluation files go (None: nothing written).
    Returns:
        the evaluation's result on the main process (for COCO: (COCOResults, {iou type: COCOeval})),
        None on the other processes.
    """
    device = torch.device(device)
    num_processes = get_world_size()
    dataset = data_loader.dataset
    logger.info("Start evaluation on %s dataset (%d images).", dataset_name, len(dataset))
    total_timer = Timer()
    inference_timer = Timer()
    total_timer.tic()
    predictions = compute_on_dataset(model, data_loader, device, bbox_aug=bbox_aug, timer=inference_timer,
                                     progress=progress, cfg=cfg)
    synchronize()  # wait for all processes, so the timing covers the slowest
    total_time = total_timer.toc()
    logger.info("Total run time: %s (%.4f s / img per device, on %d devices)", get_time_str(total_time),
                total_time * num_processes / max(len(dataset), 1), num_processes)
    logger.info("Model inference time: %s (%.4f s / img per device, on %d devices)",
                get_time_str(inference_timer.total_time),
                inference_timer.total_time * num_processes / max(len(dataset), 1), num_processes)

    predictions = _accumulate_predictions_from_multiple_gpus(predictions, len(dataset))
    if not is_main_process():
        return None
    if output_folder:
        os.makedirs(output_folder, exist_ok=True)
        torch.save(predictions, os.path.join(output_folder, "predictions.pth"))
    return evaluate(dataset=dataset, predictions=predictions, output_folder=output_folder, box_only=box_only,
                    iou_types=iou_types, expected_results=expected_results,
                    expected_results_sigma_tol=expected_results_sigma_tol)


def iou_types_from_cfg(cfg):
    """(iou_types, box_only) the model's outputs support: "bbox", plus "segm" with MODEL.MASK_ON and
    "keypoints" with MODEL.KEYPOINT_ON; RPN-only models (not RetinaNet) are evaluated on their
    proposals (box_only, iou type "box_proposal")."""
    box_only = bool(cfg.MODEL.RPN_ONLY and not cfg.MODEL.RETINANET_ON)
    if box_only:
        return ("box_proposal",), True
    iou_types = ["bbox"]
    if cfg.MODEL.MASK_ON:
        iou_types.append("segm")
    if cfg.MODEL.KEYPOINT_ON:
        iou_types.append("keypoints")
    return tuple(iou_types), False


def results_to_dict(result):
    """{iou type: {metric: float}} from what `evaluate` returned: COCO's (COCOResults, coco_evals)
    or a COCOResults, or VOC's {"map", "ap"} (-> {"bbox": {"mAP": ...}})."""
    if isinstance(result, tuple) and result:
        result = result[0]
    if hasattr(result, "results"):
        return {iou_type: {metric: float(value) for metric, value in metrics.items()}
                for iou_type, metrics in result.results.items()}
    if isinstance(result, dict) and "map" in result:
        return {"bbox": {"mAP": float(result["map"])}}
    raise TypeError("results_to_dict: cannot read an evaluation result of type %s" % type(result).__name__)


def run_test(cfg, model, distributed, output_dir=None):
    """Evaluate `model` on every DATASETS.TEST set.

    Arguments:
        cfg: the config (MODEL.* picks the iou types, TEST.* batching / TTA / expected results).
        model: the detector (DistributedDataParallel-wrapped or not); put in eval mode for the
            run and restored to its previous mode after.
        distributed: the images are split over the processes of the default group.
        output_dir: results go to <output_dir or cfg.OUTPUT_DIR>/inference/<dataset name>/.
    Returns:
        {dataset name: {iou type: {metric: float}}} on the main process, {} on the others.
    """
    from maskrcnn.data import make_data_loader

    if cfg.TEST.BBOX_AUG.ENABLED and cfg.MODEL.RPN_ONLY and not cfg.MODEL.RETINANET_ON:
        raise ValueError("TEST.BBOX_AUG.ENABLED: test-time augmentation merges detections; an RPN-only model "
                         "(MODEL.RPN_ONLY True) outputs proposals. Set TEST.BBOX_AUG.ENABLED False.")
    iou_types, box_only = iou_types_from_cfg(cfg)
    base = output_dir or cfg.OUTPUT_DIR
    dataset_names = cfg.DATASETS.TEST
    data_loaders = make_data_loader(cfg, is_train=False, is_distributed=distributed)
    inner = _unwrap(model)
    was_training = inner.training
    inner.eval()
    results = OrderedDict()
    try:
        for dataset_name, data_loader in zip(dataset_names, data_loaders):
            output_folder = os.path.join(base, "inference", dataset_name) if base else None
            result = inference(
                inner,
                data_loader,
                dataset_name=dataset_name,
                iou_types=iou_types,
                box_only=box_only,
                bbox_aug=cfg.TEST.BBOX_AUG.ENABLED,
                device=cfg.MODEL.DEVICE,
                expected_results=cfg.TEST.EXPECTED_RESULTS,
                expected_results_sigma_tol=cfg.TEST.EXPECTED_RESULTS_SIGMA_TOL,
                output_folder=output_folder,
                cfg=cfg,
            )
            synchronize()
            if result is not None:
                results[dataset_name] = results_to_dict(result)
    finally:
        inner.train(was_training)
    return dict(results) if is_main_process() else {}


AP_COLUMNS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def _format_value(value):
    if value is None:
        return "-"
    return "%.4f" % value if value >= 0 else "n/a"  # COCOeval reports -1 when nothing was evaluable


def _table(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w)  # noqa: E731
                               for i, (c, w) in enumerate(zip(r, widths)))
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule] + [line(r) for r in rows])


def format_results_table(results):
    """A readable table of `run_test`'s results: one row per (dataset, iou type), columns AP AP50
    AP75 APs APm APl (values as COCOeval gives them, 0..1; "-" where the iou type has no such metric,
    "n/a" where COCOeval had nothing to evaluate). Iou types with other metrics (box_proposal's
    AR@100..., VOC's mAP) get a table of their own below."""
    ap_rows, other = [], OrderedDict()
    for dataset_name, per_type in results.items():
        for iou_type, metrics in per_type.items():
            if any(column in metrics for column in AP_COLUMNS):
                ap_rows.append([dataset_name, iou_type] + [_format_value(metrics.get(c)) for c in AP_COLUMNS])
            else:
                other.setdefault(tuple(metrics), []).append(
                    [dataset_name, iou_type] + [_format_value(v) for v in metrics.values()])
    tables = []
    if ap_rows:
        tables.append(_table(["dataset", "iou type"] + list(AP_COLUMNS), ap_rows))
    for columns, rows in other.items():
        tables.append(_table(["dataset", "iou type"] + list(columns), rows))
    return "\n\n".join(tables) if tables else "(no results)"
