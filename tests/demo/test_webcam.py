"""demo/webcam.py headless: a generated video in, an annotated video out with the frames asked
for; a folder of images in, a folder of annotated images out; clear errors for a camera that
cannot be opened and an input that does not exist."""
import logging
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tests.tool_modules import load_script, repo_path
from tiny_detector import detecting_config_file  # noqa: F401 (fixture)

WEBCAM = repo_path("demo/webcam.py")


@pytest.fixture(scope="module")
def webcam():
    yield load_script("demo/webcam.py", "demo_webcam")
    # main() sends the "maskrcnn" log to the (captured) stdout of its test: detach that handler
    logger = logging.getLogger("maskrcnn")
    for handler in [h for h in logger.handlers if getattr(h, "_maskrcnn_setup", False)]:
        logger.removeHandler(handler)


@pytest.fixture(autouse=True)
def _headless(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)


def frame(i, height=64, width=96):
    image = np.full((height, width, 3), 60, dtype=np.uint8)
    cv2.circle(image, (20 + 12 * i, 32), 12, (0, 200, 255), -1)
    return image


def write_video(path, count):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 64))
    assert writer.isOpened()
    for i in range(count):
        writer.write(frame(i))
    writer.release()


def read_video(path):
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append(image)
    capture.release()
    return frames


def test_video_in_annotated_video_out(webcam, detecting_config_file, tmp_path, capsys):
    config_file, _ = detecting_config_file
    video, output = tmp_path / "in.mp4", tmp_path / "out" / "annotated.mp4"
    write_video(video, 4)
    code = webcam.main(["--config-file", config_file, "--input", str(video), "--output", str(output),
                        "--confidence-threshold", "0.5", "--min-image-size", "64", "--max-frames", "3"])
    assert code == 0
    frames = read_video(output)
    assert len(frames) == 3
    assert frames[0].shape == (64, 96, 3)
    # detections and the fps label are drawn: far from the input frame (mp4v is lossy, so compare loosely)
    difference = np.abs(frames[0].astype(int) - frame(0).astype(int)).mean()
    assert difference > 5
    out = capsys.readouterr().out
    assert "headless" in out
    assert "Processed 3 frames" in out and "mean" in out and "fps" in out


def test_folder_in_annotated_images_out(webcam, detecting_config_file, tmp_path, capsys):
    config_file, _ = detecting_config_file
    folder, output = tmp_path / "images", tmp_path / "annotated"
    folder.mkdir()
    for i in range(2):
        cv2.imwrite(str(folder / ("img%d.png" % i)), frame(i))
    (folder / "notes.txt").write_text("not an image")
    code = webcam.main(["--config-file", config_file, "--input", str(folder), "--output", str(output),
                        "--confidence-threshold", "0.5", "--min-image-size", "64"])
    assert code == 0
    assert sorted(os.listdir(output)) == ["img0.png", "img1.png"]
    for i in range(2):
        annotated = cv2.imread(str(output / ("img%d.png" % i)))
        assert annotated.shape == (64, 96, 3)
        assert (annotated != frame(i)).any()
    assert "Processed 2 frames" in capsys.readouterr().out


def test_camera_that_cannot_be_opened(webcam, detecting_config_file, capsys):
    config_file, _ = detecting_config_file
    code = webcam.main(["--config-file", config_file, "--input", "97"])
    assert code == 1
    assert "could not open camera 97" in capsys.readouterr().err


def test_missing_input_fails_with_a_clear_message(tmp_path):
    """As a user runs it: a separate process, non-zero exit, the message names the input."""
    missing = tmp_path / "nothing_here.mp4"
    config_file = tmp_path / "empty.yaml"
    config_file.write_text("MODEL:\n  DEVICE: cpu\n")
    result = subprocess.run([sys.executable, WEBCAM, "--config-file", str(config_file), "--input", str(missing)],
                            capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
    assert result.returncode == 1
    assert "no such file or folder" in result.stderr and str(missing) in result.stderr


def test_help_documents_every_option(webcam):
    text = webcam.build_parser().format_help()
    for option in ("--config-file", "--confidence-threshold", "--min-image-size", "--show-mask-heatmaps",
                   "--masks-per-dim", "--input", "--output", "--max-frames", "--no-window", "KEY VALUE"):
        assert option in text


def test_no_window_without_a_display(webcam):
    assert webcam.display_available() is False


def test_mask_heatmaps_need_a_mask_model(webcam, tmp_path):
    config_file = tmp_path / "boxes.yaml"
    config_file.write_text("MODEL:\n  DEVICE: cpu\n  MASK_ON: False\n")
    image = tmp_path / "one.png"
    cv2.imwrite(str(image), frame(0))
    with pytest.raises(SystemExit) as exit_info:
        webcam.main(["--config-file", str(config_file), "--input", str(image), "--show-mask-heatmaps"])
    assert exit_info.value.code == 2


def test_single_image_to_an_image_file_with_heatmaps(webcam, detecting_config_file, tmp_path):
    config_file, _ = detecting_config_file
    image, output = tmp_path / "one.jpg", tmp_path / "heat.png"
    cv2.imwrite(str(image), frame(1))
    code = webcam.main(["--config-file", config_file, "--input", str(image), "--output", str(output),
                        "--show-mask-heatmaps", "--masks-per-dim", "3", "--confidence-threshold", "0.5",
                        "--min-image-size", "64"])
    assert code == 0
    montage = cv2.imread(str(output))
    assert montage.shape == (64, 96, 3)
    below_label = montage[16:].astype(int)
    assert (below_label[..., 0] > below_label[..., 2] + 50).any(), "cold (blue) background"
    assert (below_label[..., 2] > below_label[..., 0] + 50).any(), "hot (red) mask probabilities"
