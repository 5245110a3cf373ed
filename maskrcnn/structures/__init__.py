"""Data structures of maskrcnn: BoxList (bounding_box), boxlist_ops, ImageList (image_list),
SegmentationMask (segmentation_mask), Keypoints (keypoint) and the box convention switch
(box_convention). Import from the submodules, as with maskrcnn-benchmark."""
