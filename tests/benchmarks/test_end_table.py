"""benchmarks/end_table.py: the end-of-run row of each run, from its summary.csv or, when that did not come back,
from its log's evaluation lines."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HEADER = "round,step,images,time_s,student_accuracy,teacher_accuracy,agreement\n"
LOG = """[2026-12-04 15:53:52][datafree][INFO] - round 1 took 14.2s (with its warm-up); about 38 rounds fit
[2026-12-04 16:00:00][datafree][INFO] - round 100 step 2000: student 0.8800 teacher 0.9100 agreement 0.9 (300s) | x 1
[2026-12-04 16:02:49][datafree][INFO] - round 186 step 3710: student 0.8619 teacher 0.9099 agreement 0.8883 (542s) | x 1
student mobilenetv2: test accuracy 86.19% (agreement with teacher 88.83%) after 47616 synthetic images
"""


def _table(folder: Path, *rows: str) -> list[str]:
    done = subprocess.run([sys.executable, str(REPO / "benchmarks/end_table.py"), str(folder), "p_", *rows],
                          capture_output=True, text=True, check=True)
    return done.stdout.splitlines()[2:]


def test_the_end_of_the_run_not_its_best_evaluation(tmp_path):
    (tmp_path / "p_a_summary.csv").write_text(HEADER + "10,200,100,30,0.9,0.95,0.9\n20,400,200,60,0.8,0.95,0.8\n")
    [row] = _table(tmp_path, "a")
    assert row == "| a | 80.00% | 90.00% at 30 s | 0.842 | 400 | 60 s |"


def test_a_run_without_its_summary_is_read_from_its_log(tmp_path):
    (tmp_path / "p_b.log").write_text(LOG)
    [row] = _table(tmp_path, "b")
    assert row == "| b | 86.19% | 88.00% at 300 s | 0.947 | 3710 | 542 s |"


def test_the_summary_comes_before_the_log(tmp_path):
    (tmp_path / "p_c.log").write_text(LOG)
    (tmp_path / "p_c_summary.csv").write_text(HEADER + "5,100,50,20,0.5,0.9,0.5\n")
    [row] = _table(tmp_path, "c")
    assert row.startswith("| c | 50.00% |")


def test_a_run_with_neither_says_where_to_look(tmp_path):
    (tmp_path / "p_d.log").write_text("Traceback (most recent call last):\n")
    [row, missing] = _table(tmp_path, "d", "e")
    assert row == "| d | no evaluation (see p_d.log) | | | | |"
    assert missing == "| e | no evaluation (see p_e.log) | | | | |"


def test_an_averaged_run_gives_the_weights_own_accuracy_too(tmp_path):
    averaged = LOG.replace("student 0.8619 teacher", "student 0.8619 (the average of its weights; the weights themselves "
                           "0.8512) teacher")
    (tmp_path / "p_f.log").write_text(averaged)
    (tmp_path / "p_g_summary.csv").write_text(HEADER + "5,100,50,20,0.5,0.9,0.5\n")
    lines = subprocess.run([sys.executable, str(REPO / "benchmarks/end_table.py"), str(tmp_path), "p_", "f", "g", "h"],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    assert "| the weights themselves (end) |" in lines[0] and lines[1].count("---") == 7
    assert lines[2] == "| f | 86.19% | 85.12% | 88.00% at 300 s | 0.947 | 3710 | 542 s |"
    assert lines[3] == "| g | 50.00% | | 50.00% at 20 s | 0.556 | 100 | 20 s |"
    assert lines[4] == "| h | no evaluation (see p_h.log) | | | | | |"


STOPPED = LOG.splitlines()[:2] + ["datafree: interrupted: stopped by SIGTERM after student step 2961 (round 149): full "
                                  "state saved to /tmp/run/state_last.pt; to continue, run the same command with resume"]


def test_a_run_stopped_before_its_end_gives_no_end_of_run_figure(tmp_path):
    (tmp_path / "p_i.log").write_text("\n".join(STOPPED) + "\n")
    (tmp_path / "p_i_summary.csv").write_text(HEADER + "100,2000,100,300,0.88,0.91,0.9\n")
    [row] = _table(tmp_path, "i")
    assert row == "| i | did not end (see p_i.log): its last evaluation 88.00% at 300 s | | | 2000 | |"


def test_a_run_resumed_to_its_end_ends_with_its_last_piece(tmp_path):
    (tmp_path / "p_j.log").write_text("\n".join(STOPPED) + "\n" + LOG)
    [row] = _table(tmp_path, "j")
    assert row == "| j | 86.19% | 88.00% at 300 s | 0.947 | 3710 | 542 s |"
