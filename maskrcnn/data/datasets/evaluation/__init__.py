from maskrcnn.data import datasets

from .coco import coco_evaluation
from .voc import voc_evaluation


def evaluate(dataset, predictions, output_folder, **kwargs):
    """Evaluates `predictions` (list of BoxList, one per dataset index) on `dataset`, dispatching
    on its type (COCODataset and subclasses -> COCO metrics, PascalVOCDataset -> VOC mAP)."""
    args = dict(dataset=dataset, predictions=predictions, output_folder=output_folder, **kwargs)
    if isinstance(dataset, datasets.COCODataset):
        return coco_evaluation(**args)
    if isinstance(dataset, datasets.PascalVOCDataset):
        return voc_evaluation(**args)
    raise NotImplementedError("no evaluation for dataset type %s" % type(dataset).__name__)
