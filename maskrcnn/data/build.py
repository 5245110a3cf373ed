"""make_data_loader: datasets from DatasetCatalog + transforms + samplers + collator."""
import bisect
import copy
import logging

import torch

from maskrcnn.config.paths_catalog import DatasetCatalog
from maskrcnn.utils.comm import get_rank, get_world_size

from . import datasets as D
from . import samplers
from .collate_batch import BatchCollator, BBoxAugCollator
from .seeding import PerSampleSeedBatchSampler, SeededDataset
from .transforms import build_transforms

logger = logging.getLogger("maskrcnn.data")


def build_dataset(dataset_list, transforms, dataset_catalog, is_train=True, cfg=None):
    """Datasets named in `dataset_list` (concatenated into one when training)."""
    if not isinstance(dataset_list, (list, tuple)):
        raise RuntimeError("dataset_list should be a list of strings, got {}".format(dataset_list))
    built = []
    for name in dataset_list:
        data = dataset_catalog.get(name)  # KeyError lists the registered names
        factory = getattr(D, data["factory"], None)
        if factory is None:
            raise KeyError("dataset %r: unknown factory %r (not in maskrcnn.data.datasets)" % (name, data["factory"]))
        args = copy.deepcopy(data["args"])
        keep_empty = cfg is not None and cfg.DATALOADER.KEEP_EMPTY_IMAGES
        if data["factory"] in ("COCODataset", "ShapesDataset"):
            args["remove_images_without_annotations"] = is_train and not keep_empty
            if cfg is not None:
                args["skip_unreadable_images"] = cfg.DATALOADER.SKIP_UNREADABLE_IMAGES
        if data["factory"] == "PascalVOCDataset":
            args["use_difficult"] = not is_train
        if data["factory"] == "ShapesDataset" and cfg is not None:
            shapes = cfg.DATASETS.SHAPES
            args.setdefault("image_size", shapes.IMAGE_SIZE)
            args.setdefault("num_images", shapes.NUM_TRAIN_IMAGES if args.get("split") == "train" else shapes.NUM_VAL_IMAGES)
            args.setdefault("min_shapes", shapes.MIN_SHAPES_PER_IMAGE)
            args.setdefault("max_shapes", shapes.MAX_SHAPES_PER_IMAGE)
            args.setdefault("seed", shapes.SEED)
        args["transforms"] = transforms
        built.append(factory(**args))
    if not is_train:
        return built
    return [built[0] if len(built) == 1 else D.ConcatDataset(built)]


def make_data_sampler(dataset, shuffle, distributed, seed=0):
    if distributed:
        return samplers.DistributedSampler(dataset, shuffle=shuffle, seed=seed)
    if shuffle:  # epoch-seeded, so a resumed run replays the same order
        return samplers.DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=seed)
    return torch.utils.data.sampler.SequentialSampler(dataset)


def _quantize(values, bins):
    bins = sorted(bins)
    return [bisect.bisect_right(bins, v) for v in values]


def _compute_aspect_ratios(dataset):
    ratios = []
    for i in range(len(dataset)):
        info = dataset.get_img_info(i)
        ratios.append(float(info["height"]) / float(info["width"]))
    return ratios


def make_batch_data_sampler(dataset, sampler, aspect_grouping, images_per_batch, num_iters=None, start_iter=0):
    if aspect_grouping:
        if not isinstance(aspect_grouping, (list, tuple)):
            aspect_grouping = [aspect_grouping]
        group_ids = _quantize(_compute_aspect_ratios(dataset), aspect_grouping)
        batch_sampler = samplers.GroupedBatchSampler(sampler, group_ids, images_per_batch, drop_uneven=False)
    else:
        batch_sampler = torch.utils.data.sampler.BatchSampler(sampler, images_per_batch, drop_last=False)
    if num_iters is not None:
        batch_sampler = samplers.IterationBasedBatchSampler(batch_sampler, num_iters, start_iter)
    return batch_sampler


def make_data_loader(cfg, is_train=True, is_distributed=False, start_iter=0):
    """Training: one DataLoader over DATASETS.TRAIN yielding SOLVER.MAX_ITER batches from
    `start_iter`. Test: a list of DataLoaders, one per DATASETS.TEST name (with
    TEST.BBOX_AUG.ENABLED they yield raw BGR uint8 images, untransformed, for engine/bbox_aug.py).

    Training augmentation draws from per-sample streams seeded by (SEED, rank, iteration, position)
    (maskrcnn.data.seeding), so batch `k` is the same in a run resumed at `k` as in an uninterrupted
    one, with or without worker processes; no loader consumes the global RNG."""
    num_gpus = get_world_size() if is_distributed else 1
    if is_train:
        images_per_batch = cfg.SOLVER.IMS_PER_BATCH
        shuffle, num_iters = True, cfg.SOLVER.MAX_ITER
        dataset_list = cfg.DATASETS.TRAIN
    else:
        images_per_batch = cfg.TEST.IMS_PER_BATCH
        shuffle, num_iters, start_iter = False, None, 0
        dataset_list = cfg.DATASETS.TEST
    if images_per_batch % num_gpus != 0:
        raise ValueError("IMS_PER_BATCH (%d) must be divisible by the number of processes (%d)"
                         % (images_per_batch, num_gpus))
    images_per_gpu = images_per_batch // num_gpus
    aspect_grouping = [1] if cfg.DATALOADER.ASPECT_RATIO_GROUPING else []
    seed = max(int(getattr(cfg, "SEED", 0)), 0)
    # test-time augmentation resizes every view itself (engine/bbox_aug.py): hand over raw images
    bbox_aug = not is_train and cfg.TEST.BBOX_AUG.ENABLED
    transforms = None if bbox_aug else build_transforms(cfg, is_train)
    datasets = build_dataset(dataset_list, transforms, DatasetCatalog, is_train, cfg=cfg)
    loaders = []
    for dataset in datasets:
        sampler = make_data_sampler(dataset, shuffle, is_distributed, seed=seed)
        batch_sampler = make_batch_data_sampler(dataset, sampler, aspect_grouping, images_per_gpu, num_iters, start_iter)
        if is_train:
            rank = get_rank() if is_distributed else 0
            batch_sampler = PerSampleSeedBatchSampler(batch_sampler, seed, rank, start_iter)
            dataset = SeededDataset(dataset)
        loaders.append(torch.utils.data.DataLoader(
            dataset,
            num_workers=cfg.DATALOADER.NUM_WORKERS,
            batch_sampler=batch_sampler,
            collate_fn=BBoxAugCollator() if bbox_aug else BatchCollator(cfg.DATALOADER.SIZE_DIVISIBILITY),
            # the iterator's worker base seed comes from here, not from the global RNG
            generator=torch.Generator().manual_seed(seed),
        ))
    if is_train:
        assert len(loaders) == 1
        return loaders[0]
    return loaders
