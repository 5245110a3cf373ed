from .voc_eval import do_voc_evaluation


def voc_evaluation(dataset, predictions, output_folder, box_only=False, **_):
    if box_only:
        raise NotImplementedError("voc_evaluation does not evaluate box proposals (box_only=True)")
    return do_voc_evaluation(dataset=dataset, predictions=predictions, output_folder=output_folder)
