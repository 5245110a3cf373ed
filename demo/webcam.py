#!/usr/bin/env python
"""Run a detection model live on a camera, or on a video, an image or a folder of images.

    # the model `make train` trained, on the default camera (a window opens when a display exists)
    python demo/webcam.py --config-file configs/shapes/<config>.yaml MODEL.DEVICE cpu
    # a video file, headless, annotated video written out
    python demo/webcam.py --config-file CONFIG --input clip.mp4 --output annotated.mp4
    # a folder of images (or one image), annotated images written to a folder
    python demo/webcam.py --config-file CONFIG --input images/ --output annotated/

Weights: the last checkpoint of the config's OUTPUT_DIR when there is one, else MODEL.WEIGHT
(e.g. `MODEL.WEIGHT output/model_final.pth`). Class names come from DATASETS.TRAIN[0].
Each frame shows the frames per second; a summary (frames, mean fps) is printed at the end.
In a window, Esc or q quits.
"""
import argparse
import logging
import os
import sys
import time

import cv2

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from maskrcnn.config import cfg  # noqa: E402
from maskrcnn.engine.launch import load_config  # noqa: E402
from maskrcnn.engine.visualization import IMAGE_EXTENSIONS  # noqa: E402
from maskrcnn.utils.logger import setup_logger  # noqa: E402
from maskrcnn.utils.visualization import draw_text  # noqa: E402
from predictor import COCODemo  # noqa: E402

WINDOW_NAME = "maskrcnn demo"
DEFAULT_VIDEO_FPS = 30.0


class InputError(RuntimeError):
    """The input cannot be opened or read; the message says which and why."""


# ----------------------------------------------------------------------------- inputs
def _is_image_file(path):
    return path.lower().endswith(IMAGE_EXTENSIONS)


def _capture_frames(capture, max_frames):
    count = 0
    try:
        while max_frames is None or count < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            yield "frame_%06d" % count, frame
            count += 1
    finally:
        capture.release()


def _image_frames(paths):
    for path in paths:
        frame = cv2.imread(path, cv2.IMREAD_COLOR)
        if frame is None:
            raise InputError("could not read image %s (not an image, or corrupt)" % path)
        yield os.path.basename(path), frame


def open_input(value, max_frames=None):
    """(kind, frames, fps) for --input ``value``: kind is "camera", "video", "image" or "folder";
    frames yields (name, BGR frame); fps is the source's frame rate (None for images)."""
    if value.isdigit():
        index = int(value)
        capture = cv2.VideoCapture(index)
        if not capture.isOpened():
            raise InputError(
                "could not open camera %d (none attached, or no permission to use it). Give a video, "
                "an image or a folder of images with --input instead." % index
            )
        return "camera", _capture_frames(capture, max_frames), capture.get(cv2.CAP_PROP_FPS) or None
    if not os.path.exists(value):
        raise InputError("--input %s: no such file or folder (give a camera index, a video, an image or a "
                         "folder of images)" % value)
    if os.path.isdir(value):
        paths = sorted(os.path.join(value, name) for name in os.listdir(value) if _is_image_file(name))
        if not paths:
            raise InputError("--input %s: the folder holds no images (%s)" % (value, ", ".join(IMAGE_EXTENSIONS)))
        return "folder", _image_frames(paths[:max_frames]), None
    if _is_image_file(value):
        return "image", _image_frames([value]), None
    capture = cv2.VideoCapture(value)
    if not capture.isOpened():
        raise InputError("could not open video %s (not a video OpenCV can decode?)" % value)
    return "video", _capture_frames(capture, max_frames), capture.get(cv2.CAP_PROP_FPS) or None


# ----------------------------------------------------------------------------- outputs
class VideoOutput(object):
    """Annotated frames into a video file (mp4v), opened with the first frame's size."""

    def __init__(self, path, fps):
        self.path, self.fps, self.writer = path, fps or DEFAULT_VIDEO_FPS, None

    def write(self, name, frame):
        if self.writer is None:
            folder = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(folder, exist_ok=True)
            height, width = frame.shape[:2]
            self.writer = cv2.VideoWriter(self.path, cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (width, height))
            if not self.writer.isOpened():
                raise InputError("could not open %s for writing a video" % self.path)
        self.writer.write(frame)

    def close(self):
        if self.writer is not None:
            self.writer.release()


class ImageOutput(object):
    """Annotated images into a folder (same file names as the inputs), or into one file."""

    def __init__(self, path, single_file=False):
        self.path, self.single_file = path, single_file
        os.makedirs(os.path.dirname(os.path.abspath(path)) if single_file else path, exist_ok=True)

    def write(self, name, frame):
        target = self.path if self.single_file else os.path.join(self.path, name)
        if not _is_image_file(target):
            target += ".png"
        if not cv2.imwrite(target, frame):
            raise InputError("could not write %s" % target)

    def close(self):
        pass


def make_output(path, kind, fps):
    if path is None:
        return None
    if kind in ("camera", "video"):
        return VideoOutput(path, fps)
    return ImageOutput(path, single_file=kind == "image" and _is_image_file(path))


# ----------------------------------------------------------------------------- display
def display_available():
    """True when a window can be shown: a display is set (DISPLAY / WAYLAND_DISPLAY) and this
    OpenCV build has GUI support (opencv-python-headless has none)."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        cv2.namedWindow(WINDOW_NAME, cv2.WINDOW_NORMAL)
    except cv2.error:
        return False
    return True


# ----------------------------------------------------------------------------- main loop
def run(demo, frames, output=None, show=False, wait_ms=1):
    """Annotates every frame (fps drawn in its corner), writes / shows it. Returns
    (frames processed, seconds spent in the model and drawing)."""
    count, busy = 0, 0.0
    try:
        for name, frame in frames:
            start = time.perf_counter()
            annotated = demo.run_on_opencv_image(frame)
            elapsed = time.perf_counter() - start
            busy += elapsed
            count += 1
            draw_text(annotated, "%.1f fps" % (1.0 / max(elapsed, 1e-6)), (0, 0))
            if output is not None:
                output.write(name, annotated)
            if show:
                cv2.imshow(WINDOW_NAME, annotated)
                if cv2.waitKey(wait_ms) & 0xFF in (27, ord("q")):
                    break
    except KeyboardInterrupt:
        pass
    finally:
        if output is not None:
            output.close()
    return count, busy


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, metavar="FILE", help="YAML config of the model")
    parser.add_argument("--confidence-threshold", type=float, default=0.7,
                        help="minimum score of the detections drawn (default 0.7)")
    parser.add_argument("--min-image-size", type=int, default=None,
                        help="shorter side of the network input (default: the config's INPUT.MIN_SIZE_TEST)")
    parser.add_argument("--show-mask-heatmaps", action="store_true",
                        help="show mask probability heatmaps instead of the detections")
    parser.add_argument("--masks-per-dim", type=int, default=2,
                        help="heatmaps per side of the montage (default 2: four masks)")
    parser.add_argument("--input", default="0",
                        help="camera index (default 0), a video file, an image file or a folder of images")
    parser.add_argument("--output", default=None,
                        help="annotated video (camera / video input, mp4v) or folder of annotated images "
                             "(image / folder input; an image name for a single image)")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    parser.add_argument("--no-window", action="store_true", help="never open a window (headless)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE",
                        help="config overrides, e.g. MODEL.WEIGHT output/model_final.pth MODEL.DEVICE cpu")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.masks_per_dim < 1:
        parser.error("--masks-per-dim must be >= 1")
    if args.max_frames is not None and args.max_frames < 1:
        parser.error("--max-frames must be >= 1")
    try:
        config = load_config(cfg.clone(), args)
        kind, frames, fps = open_input(args.input, args.max_frames)
    except (FileNotFoundError, InputError) as error:
        print("webcam.py: error: %s" % error, file=sys.stderr)
        return 1
    if args.show_mask_heatmaps and not config.MODEL.MASK_ON:
        parser.error("--show-mask-heatmaps needs a model with masks (MODEL.MASK_ON True)")
    setup_logger("maskrcnn", "", 0).setLevel(logging.INFO)  # which weights are loaded, device fallback
    logging.getLogger("maskrcnn.utils.model_serialization").setLevel(logging.WARNING)  # not key by key
    show = not args.no_window and display_available()
    if not show and not args.output:
        print("webcam.py: no display and no --output: the annotated frames are not kept (only timed)",
              file=sys.stderr)
    demo = COCODemo(
        config,
        confidence_threshold=args.confidence_threshold,
        show_mask_heatmaps=args.show_mask_heatmaps,
        masks_per_dim=args.masks_per_dim,
        min_image_size=args.min_image_size or config.INPUT.MIN_SIZE_TEST,
    )
    output = make_output(args.output, kind, fps)
    print("Running on %s %s (%s)%s" % (kind, args.input, "window" if show else "headless",
                                       ", writing %s" % args.output if args.output else ""))
    try:
        count, busy = run(demo, frames, output, show, wait_ms=0 if kind in ("image", "folder") and show else 1)
    except InputError as error:
        print("webcam.py: error: %s" % error, file=sys.stderr)
        return 1
    finally:
        if show:
            cv2.destroyAllWindows()
    mean_fps = count / busy if busy > 0 else 0.0
    print("Processed %d frames in %.2f s: mean %.2f fps (%.1f ms per frame)"
          % (count, busy, mean_fps, 1000.0 * busy / max(count, 1)))
    return 0 if count else 1


if __name__ == "__main__":
    sys.exit(main())
