from .coco import COCODataset
from .concat_dataset import ConcatDataset
from .list_dataset import ListDataset
from .shapes import ShapesDataset, ensure_shapes_dataset
from .voc import PascalVOCDataset

__all__ = ["COCODataset", "ConcatDataset", "ListDataset", "PascalVOCDataset", "ShapesDataset",
           "ensure_shapes_dataset"]
