#!/usr/bin/env python
"""Plot the loss, AP and learning-rate curves of a training run's metrics.json into one PNG.

    python tools/plot_metrics.py OUTPUT_DIR/metrics.json --output OUTPUT_DIR/metrics.png
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from maskrcnn.utils.metrics_plot import MetricsFormatError, plot_metrics  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("metrics", metavar="METRICS_JSON",
                        help="metrics.json written by tools/train_net.py (one JSON object per line)")
    parser.add_argument("--output", default=None, metavar="PNG",
                        help="image to write (default: metrics.png beside METRICS_JSON)")
    parser.add_argument("--title", default=None, help="figure title (default: the metrics path)")
    args = parser.parse_args(argv)
    output = args.output or os.path.join(os.path.dirname(os.path.abspath(args.metrics)), "metrics.png")
    if not os.path.isfile(args.metrics):
        parser.exit(2, f"plot_metrics: {args.metrics}: no such file\n")
    try:
        metrics = plot_metrics(args.metrics, output, title=args.title)
    except (MetricsFormatError, ValueError) as error:
        parser.exit(1, f"plot_metrics: {error}\n")
    print(f"Wrote {output} ({len(metrics.loss_names())} loss curves, {len(metrics.evaluation)} evaluation metrics)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
