"""Smoke test of benchmarks/zoo_latency.py: the small shapes model gets a timed row, a broken config
an error row (nothing skipped), and --markdown writes the same tables. No timing is asserted."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHAPES = os.path.join(REPO, "configs", "shapes", "e2e_mask_rcnn_R_18_FPN_shapes.yaml")


def table_rows(text):
    """{config name: cells} of the data rows of the markdown tables in `text`."""
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0] != "config":
            rows[cells[0]] = cells
    return rows


def test_shapes_row_and_error_row(tmp_path):
    broken = tmp_path / "broken" / "no_such_key.yaml"
    broken.parent.mkdir()
    broken.write_text("MODEL:\n  NO_SUCH_KEY: 1\n")
    markdown = tmp_path / "zoo.md"
    command = [sys.executable, os.path.join(REPO, "benchmarks", "zoo_latency.py"), "--configs", SHAPES,
               str(broken), "--repeats", "1", "--threads", "1", "--warmup-size", "64",
               "--markdown", str(markdown)]
    result = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO),
                            cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = table_rows(result.stdout)
    assert set(rows) == {"e2e_mask_rcnn_R_18_FPN_shapes", "no_such_key"}

    name, wall, cpu, detections, size, params, note = rows["e2e_mask_rcnn_R_18_FPN_shapes"]
    assert float(wall) > 0 and float(cpu) > 0
    assert 0 <= int(detections) <= 20  # DETECTIONS_PER_IMG of the config
    assert size == "96x128"  # a 4:3 image with both test sizes 128, already a multiple of 32
    assert 5 < float(params) < 20  # R-18 + a 64-channel FPN and heads
    assert note == ""

    broken_row = rows["no_such_key"]
    assert broken_row[1] == "-" and broken_row[-1].startswith("error: ") and "NO_SUCH_KEY" in broken_row[-1]

    # grouped by folder, and the file holds what was printed
    assert "### configs/shapes" in result.stdout and f"### {broken.parent}" in result.stdout
    assert markdown.read_text() == result.stdout
