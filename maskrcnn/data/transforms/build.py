from . import transforms as T


def build_transforms(cfg, is_train=True):
    """The Compose of INPUT.*: [ColorJitter, Resize, flips, ToTensor, Normalize] (train) or
    [Resize, ToTensor, Normalize] (test)."""
    if is_train:
        min_size, max_size = cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN
        flip_h, flip_v = cfg.INPUT.HORIZONTAL_FLIP_PROB_TRAIN, cfg.INPUT.VERTICAL_FLIP_PROB_TRAIN
        jitter = (cfg.INPUT.BRIGHTNESS, cfg.INPUT.CONTRAST, cfg.INPUT.SATURATION, cfg.INPUT.HUE)
    else:
        min_size, max_size = cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST
        flip_h = flip_v = 0.0
        jitter = (0.0, 0.0, 0.0, 0.0)
    steps = []
    if any(jitter):
        steps.append(T.ColorJitter(*jitter))
    steps.append(T.Resize(min_size, max_size))
    if flip_h > 0:
        steps.append(T.RandomHorizontalFlip(flip_h))
    if flip_v > 0:
        steps.append(T.RandomVerticalFlip(flip_v))
    steps += [T.ToTensor(), T.Normalize(cfg.INPUT.PIXEL_MEAN, cfg.INPUT.PIXEL_STD, cfg.INPUT.TO_BGR255)]
    return T.Compose(steps)
