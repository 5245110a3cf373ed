"""Feature Pyramid Network (Lin et al., 2017) with maskrcnn-benchmark's module names.

Lateral 1x1 convs are `fpn_inner<i>`, output 3x3 convs `fpn_layer<i>` (i counts the entries of
`in_channels_list` from 1, skipped entries included), and extra levels live in `top_blocks`
(`top_blocks.p6`, `top_blocks.p7` for RetinaNet), so maskrcnn-benchmark checkpoints load as they are.
"""
import torch.nn.functional as F
from torch import nn


class FPN(nn.Module):
    """Top-down pathway with lateral connections over consecutive feature maps.

    in_channels_list: channels of each input level, finest first (e.g. [256, 512, 1024, 2048]
        for C2..C5). A 0 skips that level (RetinaNet's [0, 512, 1024, 2048] builds P3..P5);
        skipped levels must precede the used ones.
    out_channels: channels of every output level.
    conv_block: callable(in_channels, out_channels, kernel_size, stride=1) -> nn.Module, e.g.
        `maskrcnn.modeling.make_layers.conv_with_kaiming_uniform(use_gn, use_relu)`.
    top_blocks: None, LastLevelMaxPool() (adds P6 = P5 subsampled) or LastLevelP6P7(...)
        (adds P6, P7 computed from C5 or P5); any other module is called on the coarsest output.

    forward(x: list[Tensor[N, C_i, H_i, W_i]]) -> tuple[Tensor[N, out_channels, H_j, W_j]], finest
    first. `x` holds either one tensor per entry of in_channels_list or one per used entry.
    Coarser levels are upsampled (nearest) to the size of the finer lateral, so inputs whose
    sizes are not exact multiples of 2 work too.
    """

    def __init__(self, in_channels_list, out_channels, conv_block, top_blocks=None):
        super().__init__()
        self.inner_blocks = []
        self.layer_blocks = []
        self._input_indices = []  # position in in_channels_list of each used level
        for idx, in_channels in enumerate(in_channels_list, 1):
            if in_channels == 0:
                if self.inner_blocks:
                    raise ValueError(
                        f"FPN: in_channels_list may skip (0) only leading levels, got "
                        f"{list(in_channels_list)}"
                    )
                continue
            inner_block = "fpn_inner{}".format(idx)
            layer_block = "fpn_layer{}".format(idx)
            self.add_module(inner_block, conv_block(in_channels, out_channels, 1))
            self.add_module(layer_block, conv_block(out_channels, out_channels, 3, 1))
            self.inner_blocks.append(inner_block)
            self.layer_blocks.append(layer_block)
            self._input_indices.append(idx - 1)
        if not self.inner_blocks:
            raise ValueError(f"FPN: in_channels_list has no used level: {list(in_channels_list)}")
        self._num_inputs = len(in_channels_list)
        self.top_blocks = top_blocks

    def _used_inputs(self, x):
        if len(x) == self._num_inputs:
            return [x[i] for i in self._input_indices]
        if len(x) == len(self.inner_blocks):
            return list(x)
        raise ValueError(
            f"FPN: expected {self._num_inputs} (or {len(self.inner_blocks)}) feature maps, "
            f"got {len(x)}"
        )

    def forward(self, x):
        features = self._used_inputs(x)
        last_inner = getattr(self, self.inner_blocks[-1])(features[-1])
        results = [getattr(self, self.layer_blocks[-1])(last_inner)]
        for feature, inner_block, layer_block in zip(
            features[-2::-1], self.inner_blocks[-2::-1], self.layer_blocks[-2::-1]
        ):
            inner_lateral = getattr(self, inner_block)(feature)
            inner_top_down = F.interpolate(
                last_inner, size=inner_lateral.shape[-2:], mode="nearest"
            )
            last_inner = inner_lateral.add_(inner_top_down)  # in place: no new full-size map
            results.insert(0, getattr(self, layer_block)(last_inner))

        if self.top_blocks is not None:
            if getattr(self.top_blocks, "uses_backbone_feature", False):
                results.extend(self.top_blocks(x[-1], results[-1]))
            else:
                results.extend(self.top_blocks(results[-1]))
        return tuple(results)


class LastLevelMaxPool(nn.Module):
    """P6 = P5 subsampled by 2 (1x1 max-pool, stride 2): [Tensor[N, C, ceil(H / 2), ceil(W / 2)]]."""

    uses_backbone_feature = False

    def forward(self, x):
        return [F.max_pool2d(x, kernel_size=1, stride=2, padding=0)]


class LastLevelP6P7(nn.Module):
    """RetinaNet's extra levels: P6 = conv3x3/2(input), P7 = conv3x3/2(ReLU(P6)).

    The input is P5 when in_channels == out_channels (`use_P5`), C5 otherwise (MODEL.RETINANET.USE_C5).
    forward(c5: Tensor[N, in_channels, H, W], p5: Tensor[N, out_channels, H, W]) -> [P6, P7].
    """

    uses_backbone_feature = True

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.p6 = nn.Conv2d(in_channels, out_channels, 3, 2, 1)
        self.p7 = nn.Conv2d(out_channels, out_channels, 3, 2, 1)
        for module in (self.p6, self.p7):
            nn.init.kaiming_uniform_(module.weight, a=1)
            nn.init.constant_(module.bias, 0)
        self.use_P5 = in_channels == out_channels

    def forward(self, c5, p5):
        x = p5 if self.use_P5 else c5
        p6 = self.p6(x)
        p7 = self.p7(F.relu(p6))
        return [p6, p7]
