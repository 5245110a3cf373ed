#!/usr/bin/env python
"""Draw a dataset's ground truth, saved predictions, or a model's predictions into PNGs.

    # ground truth of the first 16 validation images, as one grid image
    python tools/visualize.py --config-file CONFIG --source gt --num-images 16 --output gt.png
    # predictions saved by tools/test_net.py, one PNG per image in a folder
    python tools/visualize.py --config-file CONFIG --source predictions \\
        --predictions OUTPUT_DIR/inference/shapes_val/predictions.pth --output pictures/
    # run the trained model (last checkpoint of OUTPUT_DIR, else MODEL.WEIGHT), ground truth beside
    python tools/visualize.py --config-file CONFIG --source model --with-gt --output detections.png

An --output ending in an image extension (or --grid) gives one grid image; otherwise a folder.
Trailing KEY VALUE pairs override the config (e.g. MODEL.DEVICE cpu DATASETS.SHAPES.NUM_VAL_IMAGES 50).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from maskrcnn.config import cfg  # noqa: E402
from maskrcnn.data.datasets.class_names import dataset_metadata, metadata_for_cfg  # noqa: E402
from maskrcnn.engine import visualization as V  # noqa: E402
from maskrcnn.engine.launch import load_config  # noqa: E402
from maskrcnn.engine.predictor import Predictor  # noqa: E402


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default="", metavar="FILE", help="YAML config of the model / dataset")
    parser.add_argument("--dataset", default=None,
                        help="DatasetCatalog name (default: DATASETS.TEST[0] of the config), e.g. shapes_val")
    parser.add_argument("--source", choices=("gt", "predictions", "model"), default="gt",
                        help="gt: annotations; predictions: a saved predictions.pth; model: run the model")
    parser.add_argument("--predictions", default=None, metavar="PTH",
                        help="OUTPUT_DIR/inference/<dataset>/predictions.pth (with --source predictions)")
    parser.add_argument("--num-images", type=int, default=8, help="images to draw, from --start (default 8)")
    parser.add_argument("--start", type=int, default=0, help="index of the first image (default 0)")
    parser.add_argument("--output", required=True, help="grid image (e.g. out.png) or a folder of PNGs")
    parser.add_argument("--grid", action="store_true", help="one grid image (default when --output is an image name)")
    parser.add_argument("--columns", type=int, default=None, help="grid columns (default: about square)")
    parser.add_argument("--confidence-threshold", type=float, default=0.5,
                        help="predictions scoring below it are not drawn (default 0.5)")
    parser.add_argument("--with-gt", action="store_true", help="draw the ground truth left of each prediction")
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE", help="config overrides")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.num_images < 1:
        parser.error("--num-images must be >= 1")
    if args.source == "predictions" and not args.predictions:
        parser.error("--source predictions needs --predictions PATH")
    if args.predictions and not os.path.isfile(args.predictions):
        parser.exit(2, "visualize: --predictions %s: no such file\n" % args.predictions)
    try:
        config = load_config(cfg.clone(), args)
    except FileNotFoundError as error:
        parser.exit(2, "visualize: %s\n" % error)
    dataset_name = args.dataset or (config.DATASETS.TEST[0] if config.DATASETS.TEST else None)
    if not dataset_name:
        parser.error("no --dataset given and the config has no DATASETS.TEST")
    indices = list(range(args.start, args.start + args.num_images))
    if args.source == "predictions":
        images, titles = V.render_saved_predictions(config, args.predictions, dataset_name, indices,
                                                    args.confidence_threshold, args.with_gt)
    else:
        dataset = V.build_plain_dataset(config, dataset_name)
        indices = [i for i in indices if i < len(dataset)]
        if args.source == "gt":
            images, titles = V.render_ground_truth(dataset, indices, dataset_metadata(dataset_name))
        else:
            images, titles = V.render_predictions(dataset, Predictor(config), indices, metadata_for_cfg(config),
                                                  args.confidence_threshold, with_ground_truth=args.with_gt)
    if not images:
        parser.exit(1, "visualize: no images (the dataset %s has fewer than %d)\n" % (dataset_name, args.start + 1))
    paths = V.write_images(images, args.output, grid=True if args.grid else None, titles=titles, columns=args.columns)
    print("Wrote %s (%d images of %s)" % (paths[0] if len(paths) == 1 else args.output, len(images), dataset_name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
