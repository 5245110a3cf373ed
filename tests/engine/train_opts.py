"""Shared by the training tests: KEY VALUE overrides of a tiny R-18-FPN Faster R-CNN training on
64 px shapes images (a few iterations take about a second on one core), as command-line words, and
tools/train_net.py loaded as a module. (A module of its own, not conftest.py: several test folders
have a conftest.)"""
from tests.tiny_models import R18_FPN, SMALL, SMALL_TEST_IMAGES, command_line
from tests.tool_modules import load_script, repo_path

TRAIN_NET = repo_path("tools/train_net.py")


def load_train_net():
    """tools/train_net.py imported as the module `train_net`."""
    return load_script("tools/train_net.py", "train_net")


TINY_TRAIN = command_line(SMALL + R18_FPN + SMALL_TEST_IMAGES + [
    "DATASETS.TRAIN", ("shapes_train",),
    "DATASETS.TEST", ("shapes_val",),
    "DATASETS.SHAPES.IMAGE_SIZE", 64,
    "DATASETS.SHAPES.NUM_TRAIN_IMAGES", 8,
    "DATASETS.SHAPES.NUM_VAL_IMAGES", 4,
    "INPUT.MIN_SIZE_TRAIN", (56, 64),
    "INPUT.MAX_SIZE_TRAIN", 96,
    "DATALOADER.NUM_WORKERS", 0,
    "SOLVER.IMS_PER_BATCH", 2,
    "SOLVER.BASE_LR", 0.002,
    "SOLVER.CLIP_GRADIENTS.ENABLED", True,
    "SOLVER.CLIP_GRADIENTS.MAX_NORM", 5.0,
    "SOLVER.WARMUP_ITERS", 2,
    "SOLVER.STEPS", (4,),
    "SOLVER.MAX_ITER", 6,
    "SOLVER.CHECKPOINT_PERIOD", 3,
    "SOLVER.LOG_PERIOD", 1,
    "TEST.IMS_PER_BATCH", 2,
    "SEED", 7,
])
