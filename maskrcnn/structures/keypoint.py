"""Keypoints of the objects of one image (Tensor[N, K, 3]: x, y, visibility) and keypoint heatmap targets.

A keypoint set is a subclass of ``Keypoints`` naming its points: ``NAMES`` (K names) and
``FLIP_MAP`` (left name -> right name). ``FLIP_INDS`` (the permutation a mirror image applies)
and ``CONNECTIONS`` (index pairs to draw) are derived when the subclass is defined, so a new set
needs only::

    class HandKeypoints(Keypoints):
        NAMES = ["wrist", "thumb", "index"]
        FLIP_MAP = {}

or ``make_keypoints_class("HandKeypoints", names, flip_map, connections)``.
"""
import torch

from maskrcnn.structures._helpers import normalize_size, tensor_index
from maskrcnn.structures.bounding_box import FLIP_LEFT_RIGHT, FLIP_TOP_BOTTOM
from maskrcnn.structures.box_convention import pixel_offset, resolve_legacy_plus_one


def _create_flip_indices(names, flip_map):
    """Tensor[K] long: position of each keypoint's mirror partner (itself when it has none)."""
    both_ways = dict(flip_map)
    both_ways.update({right: left for left, right in flip_map.items()})
    unknown = sorted(set(both_ways) - set(names))
    if unknown:
        raise ValueError(f"FLIP_MAP names keypoints that are not in NAMES: {unknown}")
    return torch.tensor([names.index(both_ways.get(name, name)) for name in names], dtype=torch.long)


def _connection_indices(names, connections):
    """Connections given as name pairs or index pairs, as [[i, j], ...] index pairs."""
    pairs = []
    for first, second in connections:
        pairs.append([names.index(p) if isinstance(p, str) else int(p) for p in (first, second)])
    return pairs


class Keypoints(object):
    """Keypoints of N objects.

    Arguments:
        keypoints: Tensor[N, K, 3] (or [N, 3K]) of (x, y, visibility); visibility 0 means not
            labelled (COCO keeps x = y = 0 there).
        size: (width, height) of the image.
        mode: kept for maskrcnn-benchmark compatibility (unused).
        legacy_plus_one: pixel convention used by flips (None: the process default).

    Subclasses set NAMES and FLIP_MAP (see the module docstring); the base class has no names and
    flips without reordering.
    """

    NAMES = None
    FLIP_MAP = {}
    FLIP_INDS = None
    CONNECTIONS = []

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        names = cls.__dict__.get("NAMES")
        if names is None:
            return
        names = list(names)
        cls.NAMES = names
        if "FLIP_INDS" not in cls.__dict__:
            cls.FLIP_INDS = _create_flip_indices(names, cls.FLIP_MAP)
        cls.CONNECTIONS = _connection_indices(names, cls.__dict__.get("CONNECTIONS", []))

    def __init__(self, keypoints, size, mode=None, legacy_plus_one=None):
        device = keypoints.device if isinstance(keypoints, torch.Tensor) else torch.device("cpu")
        keypoints = torch.as_tensor(keypoints, device=device)
        if keypoints.dtype != torch.float64:
            keypoints = keypoints.to(torch.float32)
        num_names = len(self.NAMES) if self.NAMES is not None else None
        if keypoints.numel() == 0:
            keypoints = keypoints.reshape(0, num_names or 0, 3)
        if keypoints.dim() < 2 or keypoints.shape[1:].numel() % 3:
            raise ValueError(
                f"{type(self).__name__}: keypoints must be [N, K, 3] (x, y, visibility), got shape {list(keypoints.shape)}"
            )
        keypoints = keypoints.reshape(keypoints.shape[0], keypoints.shape[1:].numel() // 3, 3)
        if num_names is not None and keypoints.shape[1] != num_names:
            raise ValueError(
                f"{type(self).__name__}: expected {num_names} keypoints per object ({self.NAMES}), "
                f"got shape {list(keypoints.shape)}"
            )
        self.keypoints = keypoints
        self.size = normalize_size(size, "size")
        self.mode = mode
        self.legacy_plus_one = resolve_legacy_plus_one(legacy_plus_one)
        self.extra_fields = {}

    def _new(self, keypoints, size):
        """Same class, mode, convention and extra fields, new coordinates."""
        result = type(self)(keypoints, size, self.mode, legacy_plus_one=self.legacy_plus_one)
        for name, value in self.extra_fields.items():
            result.add_field(name, value)
        return result

    def crop(self, box):
        """Keypoints relative to the window ``box`` = (x1, y1, x2, y2); those falling outside it
        become unlabelled (visibility 0, coordinates 0)."""
        x1, y1, x2, y2 = (float(b) for b in box)
        cropped = self.keypoints.clone()
        cropped[..., 0] -= x1
        cropped[..., 1] -= y1
        inside = (
            (cropped[..., 0] >= 0) & (cropped[..., 0] <= x2 - x1)
            & (cropped[..., 1] >= 0) & (cropped[..., 1] <= y2 - y1)
        )
        cropped[~inside] = 0
        cropped[cropped[..., 2] == 0] = 0
        return self._new(cropped, (x2 - x1, y2 - y1))

    def resize(self, size, *args, **kwargs):
        size = normalize_size(size, "size")
        ratio_width, ratio_height = (float(new) / float(old) for new, old in zip(size, self.size))
        resized = self.keypoints.clone()
        resized[..., 0] *= ratio_width
        resized[..., 1] *= ratio_height
        return self._new(resized, size)

    def transpose(self, method):
        """Mirror the keypoints (FLIP_LEFT_RIGHT or FLIP_TOP_BOTTOM) and swap left/right partners
        with FLIP_INDS (a mirror image turns a left wrist into a right one, in either direction)."""
        if method not in (FLIP_LEFT_RIGHT, FLIP_TOP_BOTTOM):
            raise NotImplementedError(
                f"transpose: only FLIP_LEFT_RIGHT (0) and FLIP_TOP_BOTTOM (1) are implemented, got {method!r}"
            )
        flipped = self.keypoints
        if self.FLIP_INDS is not None:
            flipped = flipped[:, self.FLIP_INDS.to(flipped.device)]
        flipped = flipped.clone()
        axis = 0 if method == FLIP_LEFT_RIGHT else 1
        flipped[..., axis] = self.size[axis] - flipped[..., axis] - pixel_offset(self.legacy_plus_one)
        flipped[flipped[..., 2] == 0] = 0  # COCO: unlabelled keypoints have x = y = 0
        return self._new(flipped, self.size)

    def to(self, *args, **kwargs):
        moved = type(self)(self.keypoints.to(*args, **kwargs), self.size, self.mode, legacy_plus_one=self.legacy_plus_one)
        for name, value in self.extra_fields.items():
            if hasattr(value, "to"):
                value = value.to(*args, **kwargs)
            moved.add_field(name, value)
        return moved

    def __getitem__(self, item):
        index = tensor_index(item, len(self), f"{type(self).__name__} index")
        if isinstance(index, torch.Tensor):
            index = index.to(self.keypoints.device)
        selected = type(self)(self.keypoints[index], self.size, self.mode, legacy_plus_one=self.legacy_plus_one)
        for name, value in self.extra_fields.items():
            selected.add_field(name, value[index])
        return selected

    def __len__(self):
        return self.keypoints.shape[0]

    @classmethod
    def cat(cls, keypoints_list):
        """Concatenate Keypoints of the same class and image size (used by cat_boxlist)."""
        first = keypoints_list[0]
        for position, keypoints in enumerate(keypoints_list):
            if keypoints.size != first.size:
                raise ValueError(f"{cls.__name__}.cat: [{position}] has size {keypoints.size}, expected {first.size}")
        data = torch.cat([keypoints.keypoints for keypoints in keypoints_list], dim=0)
        return cls(data, first.size, first.mode, legacy_plus_one=first.legacy_plus_one)

    def add_field(self, field, field_data):
        self.extra_fields[field] = field_data

    def get_field(self, field):
        return self.extra_fields[field]

    def has_field(self, field):
        return field in self.extra_fields

    def __repr__(self):
        return (
            f"{self.__class__.__name__}(num_instances={len(self)}, image_width={self.size[0]}, "
            f"image_height={self.size[1]})"
        )


_MADE_CLASSES = {}


def _spec_key(spec):
    class_name, names, flip_map, connections = spec
    return (class_name, tuple(names), tuple(sorted(flip_map.items())), tuple(tuple(c) for c in connections))


def make_keypoints_class(class_name, names, flip_map=None, connections=()):
    """A Keypoints subclass for the keypoint set ``names`` (FLIP_INDS, CONNECTIONS derived).

    The same arguments give the same class. Its instances pickle by value (the arguments travel
    with them), so they cross DataLoader worker processes and load back from saved predictions
    even though the class is not a module attribute."""
    spec = (class_name, list(names), dict(flip_map or {}), [list(c) for c in connections])
    key = _spec_key(spec)
    if key not in _MADE_CLASSES:
        attributes = {"NAMES": list(spec[1]), "FLIP_MAP": dict(spec[2]), "CONNECTIONS": list(spec[3]),
                      "_MADE_FROM": spec, "__reduce__": _reduce_made_keypoints}
        _MADE_CLASSES[key] = type(class_name, (Keypoints,), attributes)
    return _MADE_CLASSES[key]


def _reduce_made_keypoints(self):
    return _rebuild_made_keypoints, (type(self)._MADE_FROM, self.__dict__)


def _rebuild_made_keypoints(spec, state):
    """Unpickle an instance of a make_keypoints_class class (see there)."""
    instance = object.__new__(make_keypoints_class(*spec))
    instance.__dict__.update(state)
    return instance


_PERSON_SKELETON = [
    ("left_eye", "right_eye"),
    ("left_eye", "nose"),
    ("right_eye", "nose"),
    ("right_eye", "right_ear"),
    ("left_eye", "left_ear"),
    ("right_shoulder", "right_elbow"),
    ("right_elbow", "right_wrist"),
    ("left_shoulder", "left_elbow"),
    ("left_elbow", "left_wrist"),
    ("right_hip", "right_knee"),
    ("right_knee", "right_ankle"),
    ("left_hip", "left_knee"),
    ("left_knee", "left_ankle"),
    ("right_shoulder", "left_shoulder"),
    ("right_hip", "left_hip"),
]


def kp_connections(keypoints):
    """The COCO person skeleton as [i, j] index pairs into the name list ``keypoints``."""
    return _connection_indices(list(keypoints), _PERSON_SKELETON)


class PersonKeypoints(Keypoints):
    """COCO's 17 person keypoints."""

    NAMES = [
        "nose",
        "left_eye",
        "right_eye",
        "left_ear",
        "right_ear",
        "left_shoulder",
        "right_shoulder",
        "left_elbow",
        "right_elbow",
        "left_wrist",
        "right_wrist",
        "left_hip",
        "right_hip",
        "left_knee",
        "right_knee",
        "left_ankle",
        "right_ankle",
    ]
    FLIP_MAP = {
        "left_eye": "right_eye",
        "left_ear": "right_ear",
        "left_shoulder": "right_shoulder",
        "left_elbow": "right_elbow",
        "left_wrist": "right_wrist",
        "left_hip": "right_hip",
        "left_knee": "right_knee",
        "left_ankle": "right_ankle",
    }
    CONNECTIONS = _PERSON_SKELETON


def keypoints_to_heat_map(keypoints, rois, heatmap_size):
    """Heatmap training targets: the cell of a ``heatmap_size`` x ``heatmap_size`` grid over each
    RoI that holds each keypoint.

    Arguments:
        keypoints: Tensor[N, K, 3] (x, y, visibility), matched one-to-one with ``rois``.
        rois: Tensor[N, 4] (x1, y1, x2, y2).
        heatmap_size (int): grid side M.
    Returns:
        heatmaps: Tensor[N, K] int64, flat cell index y * M + x (0 where not valid).
        valid: Tensor[N, K] int64, 1 where the keypoint is labelled and inside its RoI.
    A keypoint exactly on the RoI's right / bottom edge goes to the last column / row.
    """
    if rois.numel() == 0:
        empty = rois.new_zeros((0,), dtype=torch.long)
        return empty, empty.clone()
    x1, y1, x2, y2 = (rois[:, i : i + 1] for i in range(4))
    scale_x = heatmap_size / (x2 - x1)
    scale_y = heatmap_size / (y2 - y1)
    x = keypoints[..., 0]
    y = keypoints[..., 1]
    cell_x = ((x - x1) * scale_x).floor().long()
    cell_y = ((y - y1) * scale_y).floor().long()
    cell_x[x == x2] = heatmap_size - 1
    cell_y[y == y2] = heatmap_size - 1
    inside = (cell_x >= 0) & (cell_y >= 0) & (cell_x < heatmap_size) & (cell_y < heatmap_size)
    valid = (inside & (keypoints[..., 2] > 0)).long()
    heatmaps = (cell_y * heatmap_size + cell_x) * valid
    return heatmaps, valid
