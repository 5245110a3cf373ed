"""Reading images with OpenCV (BGR uint8 [H, W, 3]) with errors that name the file."""
import os

import cv2
import numpy as np


class UnreadableImageError(IOError):
    """An image file is missing or cannot be decoded; names the file and the dataset index."""


def read_image(path, index=None):
    """BGR uint8 [H, W, 3] of the image at `path`; raises UnreadableImageError naming it."""
    where = "" if index is None else " (dataset index %d)" % index
    if not os.path.isfile(path):
        raise UnreadableImageError("image file not found: %s%s" % (path, where))
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise UnreadableImageError("cannot decode image file: %s%s" % (path, where))
    return image
