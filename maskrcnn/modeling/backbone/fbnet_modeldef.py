"""Named FBNet architectures (selected with MODEL.FBNET.ARCH).

Each entry gives, per stage, the block op names ("block_op_type", keys of
fbnet_builder.PRIMITIVES) and the block configs ("block_cfg"):

- "first": [channels, stride] of the stem conv;
- "stages": per stage a list of [t, c, n, s] (expansion, channels, repeats, stride of the first
  repeat; a negative stride upsamples);
- "last": [channels, channel_scale] of the optional final 1x1 conv (see FBNetBuilder.add_last);
- "backbone", "rpn", "bbox", "mask" (and "kpts" / "head"): which stages form the trunk and
  each head.

The trunks below all have a total stride of 16.
"""


def add_archs(archs):
    """Register more architectures by name (a name may be defined only once)."""
    for name, arch in archs.items():
        if name in MODEL_ARCH:
            raise ValueError(f"FBNet architecture {name!r} is already defined")
        MODEL_ARCH[name] = arch


MODEL_ARCH = {
    "default": {
        "block_op_type": [
            ["ir_k3"],       # stage 0
            ["ir_k3"] * 2,   # stage 1
            ["ir_k3"] * 3,   # stage 2
            ["ir_k3"] * 7,   # stage 3
            ["ir_k3"] * 4,   # stage 4: bbox head
            ["ir_k3"] * 3,   # stage 5: rpn head
            ["ir_k3"] * 5,   # stage 6: mask head
        ],
        "block_cfg": {
            "first": [32, 2],
            "stages": [
                [[1, 16, 1, 1]],
                [[6, 24, 2, 2]],
                [[6, 32, 3, 2]],
                [[6, 64, 4, 2], [6, 96, 3, 1]],
                [[4, 160, 1, 2], [6, 160, 2, 1], [6, 240, 1, 1]],
                [[6, 96, 3, 1]],
                [[4, 160, 1, 1], [6, 160, 3, 1], [3, 80, 1, -2]],
            ],
            "last": [0, 0.0],
            "backbone": [0, 1, 2, 3],
            "rpn": [5],
            "bbox": [4],
            "mask": [6],
        },
    },
    "xirb16d_dsmask": {
        "block_op_type": [
            ["ir_k3"],       # stage 0
            ["ir_k3"] * 2,   # stage 1
            ["ir_k3"] * 3,   # stage 2
            ["ir_k3"] * 7,   # stage 3
            ["ir_k3"] * 4,   # stage 4: bbox head
            ["ir_k3"] * 5,   # stage 5: mask head
            ["ir_k3"] * 3,   # stage 6: rpn head
        ],
        "block_cfg": {
            "first": [16, 2],
            "stages": [
                [[1, 16, 1, 1]],
                [[6, 32, 2, 2]],
                [[6, 48, 3, 2]],
                [[6, 96, 4, 2], [6, 128, 3, 1]],
                [[4, 128, 1, 2], [6, 128, 2, 1], [6, 160, 1, 1]],
                [[4, 128, 1, 2], [6, 128, 2, 1], [6, 128, 1, -2], [3, 64, 1, -2]],
                [[6, 128, 3, 1]],
            ],
            "last": [0, 0.0],
            "backbone": [0, 1, 2, 3],
            "rpn": [6],
            "bbox": [4],
            "mask": [5],
        },
    },
    "mobilenet_v2": {
        "block_op_type": [
            ["ir_k3"],       # stage 0
            ["ir_k3"] * 2,   # stage 1
            ["ir_k3"] * 3,   # stage 2
            ["ir_k3"] * 7,   # stage 3
            ["ir_k3"] * 4,   # stage 4: bbox head
        ],
        "block_cfg": {
            "first": [32, 2],
            "stages": [
                [[1, 16, 1, 1]],
                [[6, 24, 2, 2]],
                [[6, 32, 3, 2]],
                [[6, 64, 4, 2], [6, 96, 3, 1]],
                [[6, 160, 3, 1], [6, 320, 1, 1]],
            ],
            "last": [0, 0.0],
            "backbone": [0, 1, 2, 3],
            "bbox": [4],
        },
    },
}


# Architectures found by searching on the detection task ("Chameleon").
MODEL_ARCH_CHAM = {
    "cham_v1a": {
        "block_op_type": [
            ["ir_k3"],                        # stage 0
            ["ir_k7"] * 2,                    # stage 1
            ["ir_k3"] * 5,                    # stage 2
            ["ir_k5"] * 7 + ["ir_k3"] * 5,    # stage 3
            ["ir_k3"] * 5,                    # stage 4: bbox head
            ["ir_k3"] * 3,                    # stage 5: rpn head
        ],
        "block_cfg": {
            "first": [32, 2],
            "stages": [
                [[1, 24, 1, 1]],
                [[4, 48, 2, 2]],
                [[7, 64, 5, 2]],
                [[12, 56, 7, 2], [8, 88, 5, 1]],
                [[7, 152, 4, 2], [10, 104, 1, 1]],
                [[8, 88, 3, 1]],
            ],
            "last": [0, 0.0],
            "backbone": [0, 1, 2, 3],
            "rpn": [5],
            "bbox": [4],
        },
    },
    "cham_v2": {
        "block_op_type": [
            ["ir_k3"],                        # stage 0
            ["ir_k5"] * 4,                    # stage 1
            ["ir_k7"] * 6,                    # stage 2
            ["ir_k5"] * 3 + ["ir_k3"] * 6,    # stage 3
            ["ir_k3"] * 7,                    # stage 4: bbox head
            ["ir_k3"] * 1,                    # stage 5: rpn head
        ],
        "block_cfg": {
            "first": [32, 2],
            "stages": [
                [[1, 24, 1, 1]],
                [[8, 32, 4, 2]],
                [[5, 48, 6, 2]],
                [[9, 56, 3, 2], [6, 56, 6, 1]],
                [[2, 160, 6, 2], [6, 112, 1, 1]],
                [[6, 56, 1, 1]],
            ],
            "last": [0, 0.0],
            "backbone": [0, 1, 2, 3],
            "rpn": [5],
            "bbox": [4],
        },
    },
}
add_archs(MODEL_ARCH_CHAM)


def _arch_from_block_rows(first, stages, last=(0, 0.0), **stage_roles):
    """An arch def from per-block rows: stages = [[(op, t, c, s), ...] per stage]."""
    return {
        "block_op_type": [[op for op, _, _, _ in stage] for stage in stages],
        "block_cfg": {
            "first": list(first),
            "stages": [[[t, c, 1, s] for _, t, c, s in stage] for stage in stages],
            "last": list(last),
            **stage_roles,
        },
    }


# FBNet-A/B/C (the ImageNet architectures of the FBNet paper, as tabulated in mobile-vision's
# fbnet_modeldef_cls), laid out for detection like "mobilenet_v2": stages 0-3 form the stride-16
# trunk (112 channels) and stage 4 (184 -> 352 channels, first block stride 2) is the box head.
# The paper's "k5_g2" / "k3_g2" blocks (expansion 1, 2 groups) are the ir_k5_s2 / ir_k3_s2 ops.
MODEL_ARCH_FBNET = {
    "fbnet_a": _arch_from_block_rows(
        first=(16, 2),
        stages=[
            [("skip", 1, 16, 1)],
            [("ir_k3", 3, 24, 2), ("ir_k3", 1, 24, 1), ("skip", 1, 24, 1), ("skip", 1, 24, 1)],
            [("ir_k5", 6, 32, 2), ("ir_k3", 3, 32, 1), ("ir_k5", 1, 32, 1), ("ir_k3", 3, 32, 1)],
            [("ir_k5", 6, 64, 2), ("ir_k5", 3, 64, 1), ("ir_k5_s2", 1, 64, 1),
             ("ir_k5", 6, 64, 1), ("ir_k3", 6, 112, 1), ("ir_k5_s2", 1, 112, 1),
             ("ir_k5", 3, 112, 1), ("ir_k3_s2", 1, 112, 1)],
            [("ir_k5", 6, 184, 2), ("ir_k5", 6, 184, 1), ("ir_k5", 3, 184, 1),
             ("ir_k5", 6, 184, 1), ("ir_k5", 6, 352, 1)],
        ],
        backbone=[0, 1, 2, 3],
        bbox=[4],
    ),
    "fbnet_b": _arch_from_block_rows(
        first=(16, 2),
        stages=[
            [("ir_k3", 1, 16, 1)],
            [("ir_k3", 6, 24, 2), ("ir_k5", 1, 24, 1), ("ir_k3", 1, 24, 1), ("ir_k3", 1, 24, 1)],
            [("ir_k5", 6, 32, 2), ("ir_k5", 3, 32, 1), ("ir_k3", 6, 32, 1), ("ir_k5", 6, 32, 1)],
            [("ir_k5", 6, 64, 2), ("ir_k5", 6, 64, 1), ("skip", 1, 64, 1), ("ir_k5", 3, 64, 1),
             ("ir_k5", 6, 112, 1), ("ir_k3", 1, 112, 1), ("ir_k5", 1, 112, 1),
             ("ir_k5", 3, 112, 1)],
            [("ir_k5", 6, 184, 2), ("ir_k5", 1, 184, 1), ("ir_k5", 6, 184, 1),
             ("ir_k5", 6, 184, 1), ("ir_k3", 6, 352, 1)],
        ],
        backbone=[0, 1, 2, 3],
        bbox=[4],
    ),
    "fbnet_c": _arch_from_block_rows(
        first=(16, 2),
        stages=[
            [("ir_k3", 1, 16, 1)],
            [("ir_k3", 6, 24, 2), ("skip", 1, 24, 1), ("ir_k3", 1, 24, 1), ("ir_k3", 1, 24, 1)],
            [("ir_k5", 6, 32, 2), ("ir_k5", 3, 32, 1), ("ir_k5", 6, 32, 1), ("ir_k3", 6, 32, 1)],
            [("ir_k5", 6, 64, 2), ("ir_k5", 3, 64, 1), ("ir_k5", 6, 64, 1), ("ir_k5", 6, 64, 1),
             ("ir_k5", 6, 112, 1), ("ir_k5", 6, 112, 1), ("ir_k5", 6, 112, 1),
             ("ir_k5", 3, 112, 1)],
            [("ir_k5", 6, 184, 2), ("ir_k5", 6, 184, 1), ("ir_k5", 6, 184, 1),
             ("ir_k5", 6, 184, 1), ("ir_k3", 6, 352, 1)],
        ],
        backbone=[0, 1, 2, 3],
        bbox=[4],
    ),
}
add_archs(MODEL_ARCH_FBNET)
