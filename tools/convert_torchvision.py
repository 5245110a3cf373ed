"""Convert a torchvision detection checkpoint into this library's key names.

    python tools/convert_torchvision.py --input maskrcnn_resnet50_fpn.pth --output ours.pth

Handles fasterrcnn/maskrcnn/keypointrcnn/retinanet _resnet50_fpn (v1 heads). The output is a
`{"model": state_dict}` checkpoint that `maskrcnn.utils.model_serialization.load_state_dict`
loads; run it with the matching config of configs/torchvision/ (see
`maskrcnn/utils/torchvision_conversion.py`), e.g.
    python tools/test_net.py --config-file configs/torchvision/e2e_mask_rcnn_R_50_FPN_torchvision.yaml \
        MODEL.WEIGHT ours.pth
"""
import argparse
import sys

import torch

from maskrcnn.utils.torchvision_conversion import convert_torchvision_state_dict, load_torchvision_file


def main(argv=None):
    parser = argparse.ArgumentParser(description="Convert a torchvision detection state dict.")
    parser.add_argument("--input", required=True, help="torchvision .pth (state dict)")
    parser.add_argument("--output", required=True, help="where to write the converted checkpoint")
    parser.add_argument("--bn-eps", type=float, default=1e-5,
                        help="torchvision's frozen batch-norm eps, folded into running_var "
                             "(default 1e-5)")
    args = parser.parse_args(argv)
    state_dict = load_torchvision_file(args.input)
    converted = convert_torchvision_state_dict(state_dict, bn_eps=args.bn_eps)
    torch.save({"model": converted}, args.output)
    print(f"converted {len(state_dict)} torchvision entries -> {len(converted)} keys in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
