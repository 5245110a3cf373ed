"""The Mask R-CNN head: feature extractors, predictors, loss and mask pasting."""
