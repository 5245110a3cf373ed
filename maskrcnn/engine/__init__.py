"""Training and inference loops (engine/trainer.py, engine/inference.py, engine/bbox_aug.py)."""
