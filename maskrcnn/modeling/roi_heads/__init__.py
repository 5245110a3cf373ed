"""RoI heads: the box head (box_head/), mask and keypoint heads, combined by roi_heads.py."""
