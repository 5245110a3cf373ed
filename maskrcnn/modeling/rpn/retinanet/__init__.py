"""RetinaNet: a single-stage detector head (focal loss) in place of the RPN + RoI heads."""
