"""The Keypoint R-CNN head: feature extractor, predictor, loss and heatmap decoding."""
