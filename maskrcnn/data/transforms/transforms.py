"""Transforms of (image, target) pairs; images are BGR uint8 numpy [H, W, 3] until ToTensor.

Geometry goes through BoxList.resize / transpose, so boxes, masks and keypoints stay aligned.
Randomness comes from torch's RNG (seeded per DataLoader worker).
"""
import cv2
import numpy as np
import torch

from maskrcnn.structures.bounding_box import FLIP_LEFT_RIGHT, FLIP_TOP_BOTTOM


def _rand():
    return float(torch.rand(()))


class Compose(object):
    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, image, target=None):
        for t in self.transforms:
            image, target = t(image, target)
        return image, target

    def __repr__(self):
        return "Compose(\n" + "".join("    %r\n" % t for t in self.transforms) + ")"


class Resize(object):
    """Scales the shorter side to `min_size` (a random choice when it is a tuple), keeping the
    longer side <= `max_size`."""

    def __init__(self, min_size, max_size):
        if not isinstance(min_size, (list, tuple)):
            min_size = (min_size,)
        self.min_size = tuple(min_size)
        self.max_size = max_size

    def get_size(self, image_size):
        """(w, h) output size for an input (w, h)."""
        w, h = image_size
        size = self.min_size[int(torch.randint(len(self.min_size), ()))]
        max_size = self.max_size
        if max_size is not None:
            min_original, max_original = float(min((w, h))), float(max((w, h)))
            if max_original / min_original * size > max_size:
                size = int(round(max_size * min_original / max_original))
        if (w <= h and w == size) or (h <= w and h == size):
            return (w, h)
        if w < h:
            return (size, int(size * h / w))
        return (int(size * w / h), size)

    def __call__(self, image, target=None):
        height, width = image.shape[:2]
        size = self.get_size((width, height))
        if size != (width, height):
            image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        if target is not None:
            target = target.resize(size)
        return image, target

    def __repr__(self):
        return "Resize(min_size=%r, max_size=%r)" % (self.min_size, self.max_size)


class RandomHorizontalFlip(object):
    def __init__(self, prob=0.5):
        self.prob = prob

    def __call__(self, image, target=None):
        if _rand() < self.prob:
            image = np.ascontiguousarray(image[:, ::-1])
            if target is not None:
                target = target.transpose(FLIP_LEFT_RIGHT)
        return image, target


class RandomVerticalFlip(object):
    def __init__(self, prob=0.5):
        self.prob = prob

    def __call__(self, image, target=None):
        if _rand() < self.prob:
            image = np.ascontiguousarray(image[::-1])
            if target is not None:
                target = target.transpose(FLIP_TOP_BOTTOM)
        return image, target


class ColorJitter(object):
    """Random brightness, contrast, saturation (factors in [1-x, 1+x]) and hue (shift in
    [-hue, hue] of a full turn, hue <= 0.5), applied in a random order, on BGR uint8."""

    def __init__(self, brightness=None, contrast=None, saturation=None, hue=None):
        self.brightness = float(brightness or 0)
        self.contrast = float(contrast or 0)
        self.saturation = float(saturation or 0)
        self.hue = float(hue or 0)
        if not 0 <= self.hue <= 0.5:
            raise ValueError("ColorJitter: hue must be in [0, 0.5], got %r" % hue)

    @staticmethod
    def _factor(amount):
        return 1.0 + (2 * _rand() - 1) * amount

    def __call__(self, image, target=None):
        ops = []
        if self.brightness > 0:
            ops.append(lambda im: im * self._factor(self.brightness))
        if self.contrast > 0:
            def contrast(im):
                gray = cv2.cvtColor(np.clip(im, 0, 255).astype(np.uint8), cv2.COLOR_BGR2GRAY).mean()
                return gray + (im - gray) * self._factor(self.contrast)
            ops.append(contrast)
        if self.saturation > 0:
            def saturation(im):
                gray = cv2.cvtColor(np.clip(im, 0, 255).astype(np.uint8), cv2.COLOR_BGR2GRAY)
                gray = gray.astype(np.float32)[..., None]
                return gray + (im - gray) * self._factor(self.saturation)
            ops.append(saturation)
        if self.hue > 0:
            def hue(im):
                hsv = cv2.cvtColor(np.clip(im, 0, 255).astype(np.uint8), cv2.COLOR_BGR2HSV_FULL)
                shift = int(round((2 * _rand() - 1) * self.hue * 256))
                hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + shift) % 256).astype(np.uint8)
                return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR_FULL).astype(np.float32)
            ops.append(hue)
        if not ops:
            return image, target
        out = image.astype(np.float32)
        for position in torch.randperm(len(ops)).tolist():
            out = ops[position](out)
        return np.clip(out, 0, 255).astype(np.uint8), target


class ToTensor(object):
    """BGR uint8 [H, W, 3] -> RGB float Tensor[3, H, W] in [0, 1] (torchvision's to_tensor on
    an RGB image, so Normalize(to_bgr255=...) means what it means in maskrcnn-benchmark)."""

    def __call__(self, image, target=None):
        # numpy arithmetic: single-threaded, so the main process does not pay OpenMP start-up
        # for small images (tens of ms per op on a loaded machine)
        chw = np.ascontiguousarray(image[:, :, ::-1].transpose(2, 0, 1), dtype=np.float32)
        chw *= np.float32(1.0 / 255)
        return torch.from_numpy(chw), target


class Normalize(object):
    """(image - mean) / std per channel; with to_bgr255 the RGB [0,1] tensor first becomes BGR [0,255]."""

    def __init__(self, mean, std, to_bgr255=True):
        self.mean = list(mean)
        self.std = list(std)
        self.to_bgr255 = to_bgr255

    def __call__(self, image, target=None):
        if image.device.type != "cpu" or image.requires_grad or image.dtype != torch.float32:
            if self.to_bgr255:
                image = image[[2, 1, 0]] * 255
            mean = torch.as_tensor(self.mean, dtype=image.dtype, device=image.device).view(-1, 1, 1)
            std = torch.as_tensor(self.std, dtype=image.dtype, device=image.device).view(-1, 1, 1)
            return (image - mean) / std, target
        array = image.numpy()
        if self.to_bgr255:
            array = array[::-1] * np.float32(255)
        mean = np.asarray(self.mean, dtype=np.float32).reshape(-1, 1, 1)
        inv_std = (1.0 / np.asarray(self.std, dtype=np.float32)).reshape(-1, 1, 1)
        return torch.from_numpy(np.ascontiguousarray((array - mean) * inv_std)), target
