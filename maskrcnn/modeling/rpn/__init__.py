"""Region proposal network (rpn.py), its anchors, loss and post-processing, and RetinaNet (retinanet/)."""
