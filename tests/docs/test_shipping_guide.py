"""docs/shipping.md's block, run as written in an empty folder: the CPU demo, deployed with int8 and reported.

A full CPU run (the demo takes one to three minutes on 2 cores): slow. The fast tests in tests/ship run the same commands on tiny runs.
"""
import json

import pytest

from markdown_blocks import blocks, play


@pytest.mark.slow
def test_shipping_guide(tmp_path):
    steps = blocks("docs/shipping.md")
    assert [k for k, _, _ in steps] == ["run"]
    (printed,) = play(steps, tmp_path, timeout=1800)
    assert "report: student " in printed and "CPU latency" in printed  # the distill run's headline
    deploy = json.loads((tmp_path / "outputs/deploy/deploy.json").read_text())
    assert set(deploy["files"]) == {"student.onnx", "student.ts", "student.pt2", "student.int8.onnx"}
    for entry in deploy["files"].values():
        assert entry["parity"]["images"] == {"synthetic": 256, "real": 256}
    int8 = deploy["int8"]
    assert int8["calibration"] == {"images": 512, "source": "synthetic only"}
    assert abs(int8["accuracy"]["int8"] - int8["accuracy"]["float"]) <= 0.03  # the guide's 3 points
    assert int8["calibration_comparison"]["images"] == 512
    report = json.loads((tmp_path / "outputs/report/report.json").read_text())
    rows = {row["name"]: row for row in report["models"]}
    assert list(rows) == ["teacher", "student", "student ONNX", "student int8 ONNX"]
    for row in rows.values():
        assert 0 <= row["ece"] <= 1 and row["cpu_latency_ms_batch1"]["median_ms"] > 0
        assert row["accuracy"] > 0.3  # chance is 10%
    for name in ("report.md", "accuracy_latency.png", "reliability.png", "corruptions.png"):
        assert (tmp_path / "outputs/report" / name).is_file()
    # Everything it wrote is under outputs/, which .gitignore ignores.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs"]
