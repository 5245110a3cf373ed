"""The Fast R-CNN box head: feature extractors, predictors, loss and post-processing."""
