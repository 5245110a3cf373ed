"""Run by torchrun in test_distributed.py: tools/train_net.py's main, then each rank saves the
weights it ended with to OUTPUT_DIR/rank<RANK>.pth."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from tests.tool_modules import load_script  # noqa: E402

if __name__ == "__main__":
    import torch

    train_net = load_script("tools/train_net.py", "train_net")
    model = train_net.main(sys.argv[1:])
    output_dir = sys.argv[sys.argv.index("OUTPUT_DIR") + 1]
    torch.save(model.state_dict(), os.path.join(output_dir, "rank%s.pth" % os.environ["RANK"]))
