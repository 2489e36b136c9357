"""benchmarks/queue.sh: a queue of runs worked through over several commands, each run stopped by a command's clock
resumed by the next command, a failed run skipped, and every run that ended tabled once."""
from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# A stand-in for benchmarks/zoo_pairs.sh with PIECE_S: a run of NEED seconds of work, kept in $OUT/NAME.work between
# pieces, which ends (distill's closing line, status 0) when its piece is long enough, else is stopped (143), and
# fails at once (status 1) for seed 9. Its log is appended to piece after piece, as resumable_distill.sh does.
FAKE_PAIRS = """#!/usr/bin/env bash
set -euo pipefail
pair=$4; name="${pair%%:*}_${pair#*:}_s$SEEDS"; log="$OUT/$name.log"; work="$OUT/$name.work"
[ "$SEEDS" != 9 ] || { echo "distill exit status 1" >> "$log"; exit 0; }
done_s=$(cat "$work" 2>/dev/null || echo 0); need=$((NEED - done_s))
if [ "$PIECE_S" -ge "$need" ]; then
  sleep "$need"; echo $NEED > "$work"
  printf 'round 3 step 30: student 0.5 teacher 0.9 agreement 0.5 (%ss)\\nstudent wrn16_1: test accuracy 0.5\\n' "$NEED" >> "$log"
  echo "distill exit status 0" >> "$log"
else
  sleep "$PIECE_S"; echo $((done_s + PIECE_S)) > "$work"; echo "distill exit status 143" >> "$log"
fi
"""


def _call(tmp_path: Path, queue: str, **more: str) -> str:
    env = {"PATH": "/usr/bin:/bin", "QUEUE": queue, "QUEUE_DIR": str(tmp_path / "queue"), "OUT": str(tmp_path / "out"),
           "ZOO_PAIRS": str(tmp_path / "pairs.sh"), "NEED": "3", "SHORTEST_S": "3", "STOPPING_S": "0",
           "AFTER_RUN": 'echo "after $RUN"', "TEACHERS_DIR": str(tmp_path / "teachers"), **more}
    done = subprocess.run(["bash", "benchmarks/queue.sh", "DATA", "600", "5"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _returned(tmp_path: Path, name: str) -> str:
    """A file of the queue's state as a call brings it back: inside $OUT/queue.tgz."""
    with tarfile.open(tmp_path / "out" / "queue.tgz") as tar:
        return tar.extractfile(f"./{name}").read().decode()


def test_a_queue_goes_on_where_the_last_command_stopped(tmp_path):
    (tmp_path / "pairs.sh").write_text(FAKE_PAIRS)
    (tmp_path / "pairs.sh").chmod(0o755)
    queue = "wrn40_2:wrn16_1:9 wrn40_2:wrn16_1:0 wrn40_2:wrn16_1:1"
    first = _call(tmp_path, queue)  # 5 s: seed 9 fails at once, seed 0 ends after 3, seed 1 would have 2 s: it waits
    assert "wrn40_2_wrn16_1_s0 for up to" in first and "s9 failed" in first
    assert "s1 waits for the next" in first and "| wrn40_2_wrn16_1_s0 | 50.00%" in first
    assert (tmp_path / "queue" / "wrn40_2_wrn16_1_s0_after.log").read_text() == "after /tmp/zoo_runs/wrn40_2_wrn16_1_s0\n"
    second = _call(tmp_path, queue)  # seed 0 is not run again, nor the failed seed 9; seed 1 ends
    assert "s0 for up to" not in second and "s9" not in second and "wrn40_2_wrn16_1_s1 for up to" in second
    assert "| wrn40_2_wrn16_1_s0 |" in second and "| wrn40_2_wrn16_1_s1 | 50.00%" in second
    assert _returned(tmp_path, "wrn40_2_wrn16_1_s1.log").count("distill exit status") == 1
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["queue.tgz"]  # one file: the tool brings back 8 at most


def test_a_run_longer_than_a_command_is_resumed_by_the_next(tmp_path):
    (tmp_path / "pairs.sh").write_text(FAKE_PAIRS.replace('"$OUT/$name.work"', '"$OUT/$name.work"; NEED=6'))
    (tmp_path / "pairs.sh").chmod(0o755)
    first = _call(tmp_path, "wrn40_2:wrn16_1:0")
    assert "for up to" in first and "|" not in first  # stopped with its state: no end-of-run row
    second = _call(tmp_path, "wrn40_2:wrn16_1:0")
    assert "| wrn40_2_wrn16_1_s0 | 50.00%" in second
    log = _returned(tmp_path, "wrn40_2_wrn16_1_s0.log")
    assert log.index("distill exit status 143") < log.index("distill exit status 0")  # one log, piece after piece


def test_teacher_s_trains_the_missing_teachers_first_and_only_once(tmp_path):
    (tmp_path / "pairs.sh").write_text(FAKE_PAIRS)
    (tmp_path / "pairs.sh").chmod(0o755)
    # A stand-in for benchmarks/train_teachers.sh: records its arguments and leaves each teacher where it belongs.
    (tmp_path / "train.sh").write_text(f"""#!/usr/bin/env bash
echo "$@" >> {tmp_path}/trained
for t in "${{@:3}}"; do mkdir -p {tmp_path}/teachers/$t; touch {tmp_path}/teachers/$t/teacher.pt
  mkdir -p "$OUT/$t"; touch "$OUT/$t/teacher.0.pt" "$OUT/$t/teacher.meta.pt"; done
echo "the teachers' logs" > "$OUT/teacher_logs.tgz"
""")
    (tmp_path / "train.sh").chmod(0o755)
    (tmp_path / "teachers" / "resnet34").mkdir(parents=True)
    (tmp_path / "teachers" / "resnet34" / "teacher.pt").touch()  # already on the machine: not trained again
    queue = "wrn40_2:wrn16_1:0 resnet34:mobilenetv2:0 wrn40_2:wrn16_1:1 vgg11_bn:resnet18:0"
    first = _call(tmp_path, queue, TEACHER_S="300", TRAIN_TEACHERS=str(tmp_path / "train.sh"))
    assert "queue: training the teachers wrn40_2 vgg11_bn for 300s each" in first
    assert (tmp_path / "trained").read_text() == "DATA 300 wrn40_2 vgg11_bn\n"
    # the teachers' pieces come back as files beside queue.tgz, their logs inside it
    assert sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file()) == [
        "queue.tgz", "vgg11_bn/teacher.0.pt", "vgg11_bn/teacher.meta.pt", "wrn40_2/teacher.0.pt",
        "wrn40_2/teacher.meta.pt"]
    assert _returned(tmp_path, "teacher_logs.tgz") == "the teachers' logs\n"
    _call(tmp_path, queue, TEACHER_S="300", TRAIN_TEACHERS=str(tmp_path / "train.sh"))
    assert (tmp_path / "trained").read_text() == "DATA 300 wrn40_2 vgg11_bn\n"  # they are there now
    assert "training" not in _call(tmp_path, queue)  # without TEACHER_S, as before


def test_an_item_with_its_own_budget_gets_it_and_the_others_the_queues(tmp_path):
    (tmp_path / "pairs.sh").write_text(FAKE_PAIRS.replace("pair=$4;", 'pair=$4; echo "$pair $3" >> "$OUT/budgets";'))
    (tmp_path / "pairs.sh").chmod(0o755)
    out = _call(tmp_path, "resnet34:resnet18:0 wrn40_2:wrn16_1:0:300", NEED="1")
    assert "| resnet34_resnet18_s0 | 50.00%" in out and "| wrn40_2_wrn16_1_s0 | 50.00%" in out
    assert (tmp_path / "queue" / "budgets").read_text() == "resnet34:resnet18 600\nwrn40_2:wrn16_1 300\n"
