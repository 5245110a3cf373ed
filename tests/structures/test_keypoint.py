import pytest
import torch

from maskrcnn.structures.bounding_box import FLIP_LEFT_RIGHT, FLIP_TOP_BOTTOM
from maskrcnn.structures.keypoint import (
    Keypoints,
    PersonKeypoints,
    keypoints_to_heat_map,
    make_keypoints_class,
)


def person_keypoints(count=2, seed=0, legacy=True):
    generator = torch.Generator().manual_seed(seed)
    data = torch.rand(count, 17, 3, generator=generator) * torch.tensor([60.0, 40.0, 1.0])
    data[..., 2] = 2
    data[0, 3] = 0  # an unlabelled keypoint (COCO stores 0, 0, 0)
    return PersonKeypoints(data, (64, 48), legacy_plus_one=legacy)


def test_person_keypoint_tables():
    assert len(PersonKeypoints.NAMES) == 17 and PersonKeypoints.NAMES[0] == "nose"
    names = PersonKeypoints.NAMES
    for position, partner in enumerate(PersonKeypoints.FLIP_INDS.tolist()):
        name = names[position]
        if name.startswith("left_"):
            assert names[partner] == "right_" + name[5:]
        elif name.startswith("right_"):
            assert names[partner] == "left_" + name[6:]
        else:
            assert partner == position
    assert len(PersonKeypoints.CONNECTIONS) == 15
    assert [names.index("left_eye"), names.index("right_eye")] in PersonKeypoints.CONNECTIONS
    assert all(0 <= i < 17 and 0 <= j < 17 for i, j in PersonKeypoints.CONNECTIONS)


@pytest.mark.parametrize("legacy", [True, False])
def test_flip_uses_flip_inds(legacy):
    keypoints = person_keypoints(legacy=legacy)
    flipped = keypoints.transpose(FLIP_LEFT_RIGHT).keypoints
    source = keypoints.keypoints
    offset = 1 if legacy else 0
    left_eye, right_eye = PersonKeypoints.NAMES.index("left_eye"), PersonKeypoints.NAMES.index("right_eye")
    # the flipped left eye is the mirrored right eye
    assert flipped[1, left_eye, 0].item() == pytest.approx(64 - source[1, right_eye, 0].item() - offset)
    assert flipped[1, left_eye, 1].item() == pytest.approx(source[1, right_eye, 1].item())
    inds = PersonKeypoints.FLIP_INDS
    assert torch.allclose(flipped[1, :, 0], 64 - source[1, inds, 0] - offset)
    # unlabelled keypoints stay (0, 0, 0): index 3 (left_ear) moves to right_ear
    right_ear = PersonKeypoints.NAMES.index("right_ear")
    assert flipped[0, right_ear].tolist() == [0.0, 0.0, 0.0]
    twice = keypoints.transpose(FLIP_LEFT_RIGHT).transpose(FLIP_LEFT_RIGHT).keypoints
    assert torch.allclose(twice, source, atol=1e-5)
    vertical = keypoints.transpose(FLIP_TOP_BOTTOM).keypoints
    assert torch.allclose(vertical[1, :, 1], 48 - source[1, inds, 1] - offset)
    assert torch.allclose(vertical[1, :, 0], source[1, inds, 0])


def test_resize_crop_to_getitem():
    keypoints = person_keypoints(count=3)
    keypoints.add_field("scores", torch.tensor([0.1, 0.2, 0.3]))
    resized = keypoints.resize((128, 24))
    assert resized.size == (128, 24) and isinstance(resized, PersonKeypoints)
    assert torch.allclose(resized.keypoints[..., 0], keypoints.keypoints[..., 0] * 2)
    assert torch.allclose(resized.keypoints[..., 1], keypoints.keypoints[..., 1] * 0.5)
    assert torch.allclose(resized.resize((64, 48)).keypoints, keypoints.keypoints, atol=1e-5)
    assert torch.equal(resized.get_field("scores"), keypoints.get_field("scores"))
    cropped = keypoints.crop((10, 5, 40, 30))
    assert cropped.size == (30, 25)
    inside = (
        (keypoints.keypoints[..., 0] >= 10) & (keypoints.keypoints[..., 0] <= 40)
        & (keypoints.keypoints[..., 1] >= 5) & (keypoints.keypoints[..., 1] <= 30)
        & (keypoints.keypoints[..., 2] > 0)
    )
    assert torch.equal(cropped.keypoints[..., 2] > 0, inside)
    assert torch.allclose(cropped.keypoints[inside][:, 0], keypoints.keypoints[inside][:, 0] - 10)
    assert cropped.keypoints[~inside].abs().sum() == 0
    selected = keypoints[torch.tensor([True, False, True])]
    assert len(selected) == 2 and selected.get_field("scores").tolist() == pytest.approx([0.1, 0.3])
    assert torch.equal(keypoints[1].keypoints, keypoints.keypoints[1:2])
    assert torch.equal(keypoints[[2, 0]].keypoints, keypoints.keypoints[[2, 0]])
    assert torch.equal(keypoints.to("cpu").keypoints, keypoints.keypoints)
    assert repr(keypoints) == "PersonKeypoints(num_instances=3, image_width=64, image_height=48)"


def test_custom_keypoint_classes():
    Shape = make_keypoints_class(
        "StarKeypoints", ["top", "left_tip", "right_tip"], {"left_tip": "right_tip"}, [("top", "left_tip")]
    )
    assert Shape.__name__ == "StarKeypoints" and Shape.FLIP_INDS.tolist() == [0, 2, 1]
    assert Shape.CONNECTIONS == [[0, 1]]

    class Hand(Keypoints):
        NAMES = ["wrist", "thumb"]

    assert Hand.FLIP_INDS.tolist() == [0, 1]
    star = Shape([[[5.0, 1.0, 2], [1.0, 8.0, 2], [9.0, 8.0, 2]]], (10, 10), legacy_plus_one=False)
    flipped = star.transpose(FLIP_LEFT_RIGHT)
    assert isinstance(flipped, Shape)
    assert flipped.keypoints[0].tolist() == [[5.0, 1.0, 2.0], [1.0, 8.0, 2.0], [9.0, 8.0, 2.0]]
    with pytest.raises(ValueError, match="expected 3 keypoints per object"):
        Shape(torch.zeros(1, 4, 3), (10, 10))
    with pytest.raises(ValueError, match="not in NAMES"):
        make_keypoints_class("Bad", ["a"], {"a": "b"})
    assert Shape(torch.zeros(0, 3, 3), (10, 10)).keypoints.shape == (0, 3, 3)
    assert PersonKeypoints([], (10, 10)).keypoints.shape == (0, 17, 3)
    assert Keypoints(torch.ones(2, 12), (10, 10)).keypoints.shape == (2, 4, 3)
    with pytest.raises(ValueError, match=r"\[N, K, 3\]"):
        Keypoints(torch.ones(2, 5), (10, 10))


def test_keypoints_to_heat_map_hand_cases():
    rois = torch.tensor([[0.0, 0.0, 10.0, 10.0], [10.0, 20.0, 30.0, 60.0]])
    keypoints = torch.tensor(
        [
            # x, y, v  for roi 0 (10 x 10, heatmap 5 -> 2 px per cell)
            [[0.0, 0.0, 2], [3.0, 7.9, 1], [10.0, 10.0, 2], [5.0, 5.0, 0], [11.0, 2.0, 2]],
            # roi 1 (20 x 40 -> 4 px x 8 px per cell)
            [[10.0, 20.0, 2], [29.9, 59.9, 2], [9.9, 30.0, 2], [18.0, 44.0, 2], [30.0, 21.0, 2]],
        ]
    )
    heatmaps, valid = keypoints_to_heat_map(keypoints, rois, 5)
    assert heatmaps.dtype == torch.int64 and valid.shape == (2, 5)
    # roi 0: (0,0)->cell 0; (3,7.9)->x1,y3 -> 16; (10,10) on the edge -> 24; invisible; outside
    assert valid[0].tolist() == [1, 1, 1, 0, 0]
    assert heatmaps[0].tolist() == [0, 16, 24, 0, 0]
    # roi 1: corner 0; (29.9,59.9)->x4,y4 -> 24; x < x1 invalid; (18,44)->x2,y3 -> 17; right edge x4,y0 -> 4
    assert valid[1].tolist() == [1, 1, 0, 1, 1]
    assert heatmaps[1].tolist() == [0, 24, 0, 17, 4]
    empty_heatmaps, empty_valid = keypoints_to_heat_map(torch.zeros(0, 17, 3), torch.zeros(0, 4), 56)
    assert empty_heatmaps.numel() == 0 and empty_valid.numel() == 0


def test_kp_connections_matches_person_table():
    from maskrcnn.structures.keypoint import kp_connections

    assert kp_connections(PersonKeypoints.NAMES) == PersonKeypoints.CONNECTIONS
    reordered = list(reversed(PersonKeypoints.NAMES))
    assert kp_connections(reordered)[0] == [reordered.index("left_eye"), reordered.index("right_eye")]


class _KeypointsDataset(torch.utils.data.Dataset):
    """Yields keypoints of a class made at run time (as the shapes keypoint data does)."""

    def __len__(self):
        return 2

    def __getitem__(self, index):
        Shape = make_keypoints_class("TriangleKeypoints", ["top", "left", "right"], {"left": "right"})
        return Shape(torch.full((1, 3, 3), float(index)), (10, 10))


def test_made_keypoint_classes_pickle_and_cross_worker_processes():
    import pickle

    Shape = make_keypoints_class("TriangleKeypoints", ["top", "left", "right"], {"left": "right"})
    assert make_keypoints_class("TriangleKeypoints", ["top", "left", "right"], {"left": "right"}) is Shape
    keypoints = Shape(torch.rand(2, 3, 3), (10, 10))
    keypoints.add_field("scores", torch.ones(2, 3))
    restored = pickle.loads(pickle.dumps(keypoints))
    assert type(restored) is Shape
    assert torch.equal(restored.keypoints, keypoints.keypoints)
    assert torch.equal(restored.get_field("scores"), keypoints.get_field("scores"))
    # a DataLoader worker pickles each sample back to the main process
    loader = torch.utils.data.DataLoader(_KeypointsDataset(), batch_size=None, num_workers=1)
    values = [float(sample.keypoints[0, 0, 0]) for sample in loader]
    assert values == [0.0, 1.0]
