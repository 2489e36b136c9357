"""torchrun with two CPU processes (gloo) through the real CLI: what each rank does, what is written once,
and a SIGTERM to one rank resumed to bitwise the uninterrupted run."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from datafree.export import SyntheticSet
from export.test_cli_synthesize import _uninterrupted
from test_cli import TINY

# The CLI with one patch, run by torchrun: the process of rank KILL_RANK sends itself SIGTERM during
# its N-th student step. The signal and its handling are real; only the moment and the rank are chosen.
KILLER = """
import os, signal, sys
from datafree.distill import trainer
from datafree.cli import main

kill_rank, at = int(sys.argv[1]), int(sys.argv[2])  # at < 0: the rank dies there (os._exit), without a word
calls = [0]
step = trainer.Distiller._step

def student_step(self, *batch):
    calls[0] += 1
    if calls[0] == abs(at) and int(os.environ["RANK"]) == kill_rank:
        if at < 0:
            os._exit(3)
        os.kill(os.getpid(), signal.SIGTERM)
    return step(self, *batch)

trainer.Distiller._step = student_step
sys.exit(main(sys.argv[3:]))
"""

# The same for synthesize: rank KILL_RANK sends itself SIGTERM while labelling its N-th drawn batch.
SYNTHESIS_KILLER = """
import os, signal, sys
from datafree.export import synthesize
from datafree.cli import main

kill_rank, at = int(sys.argv[1]), int(sys.argv[2])
calls = [0]
label = synthesize.label_with_teacher

def label_with_teacher(*args, **kwargs):
    calls[0] += 1
    if calls[0] == at and int(os.environ["RANK"]) == kill_rank:
        os.kill(os.getpid(), signal.SIGTERM)
    return label(*args, **kwargs)

synthesize.label_with_teacher = label_with_teacher
sys.exit(main(sys.argv[3:]))
"""

# The shapes demo at its smallest; the teacher is trained in the run, so train-teacher's DDP path runs too.
DISTILL = [a for a in TINY if not a.startswith("trainer.")] + [
    "data.batch_size=32", "trainer.rounds=4", "trainer.student_steps=3", "trainer.batch_size=16", "trainer.eval_every=2",
    "trainer.log_every=2", "trainer.checkpoint_every=5", "noise_baseline=false",
]


def torchrun(*args, script=None):
    """``torchrun --standalone --nproc_per_node=2 -m datafree ARGS`` (or ``SCRIPT ARGS``)."""
    target = ["-m", "datafree"] if script is None else [script]
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           *target, *args], capture_output=True, text=True, timeout=300)


def _states(run: Path, name="state_last"):
    return [torch.load(run / f"{name}{suffix}.pt", weights_only=True) for suffix in ("", ".rank1")]


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _rows(run: Path) -> list[dict]:
    with (run / "summary.csv").open(newline="") as handle:
        return [{k: v for k, v in row.items() if k != "time_s"} for row in csv.DictReader(handle)]


def _scalars(run: Path) -> dict[str, list]:
    """What TensorBoard shows: every tag's (step, value) points, after its purges."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.mark.long(45)
def test_distill_on_two_processes_and_a_sigterm_to_one_resumed_bitwise(tmp_path):
    # With the running average of the weights: student.pt is the average, so it too must resume bitwise.
    distill = [*DISTILL, "trainer.ema_decay=0.9"]
    reference = tmp_path / "reference"
    proc = torchrun("distill", *distill, f"hydra.run.dir={reference}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("student microcnn: test accuracy") == 1  # rank 0 alone prints
    # Each rank synthesized its own images (seed + rank): their replay pools differ ...
    first, second = _states(reference)
    assert first["world_size"] == second["world_size"] == 2
    assert not torch.equal(first["pool"]["images"], second["pool"]["images"])
    # ... and trained one student (DDP), and before that one teacher.
    assert _equal(first["student"], second["student"])
    assert _equal(first["student_average"]["module"], second["student_average"]["module"])
    assert _equal(*(state["model"] for state in _states(reference / "teacher")))
    # One set of outputs: rank 1 wrote only its own state files.
    written = sorted(str(p.relative_to(reference)) for p in reference.rglob("*") if p.is_file())
    assert [p for p in written if "rank1" in p] == ["state_best.rank1.pt", "state_last.rank1.pt", "state_prev.rank1.pt",
                                                     "teacher/state_best.rank1.pt", "teacher/state_last.rank1.pt"]
    for name in ("student.pt", "teacher.pt", "samples.png", "summary.csv", ".hydra/config.yaml", "distill.log"):
        assert name in written, written
    assert len(list((reference / "tensorboard").iterdir())) == 1
    rows = _rows(reference)
    assert [(r["round"], r["step"], r["images"]) for r in rows] == [("2", "6", "64"), ("4", "12", "128")]

    # SIGTERM to rank 1 alone during its 5th student step: both ranks stop at the same later boundary.
    run = tmp_path / "run"
    proc = torchrun("1", "5", "distill", *distill, f"hydra.run.dir={run}", script=_killer(tmp_path))
    assert proc.returncode != 0
    assert proc.stderr.count("datafree: interrupted: stopped by SIGTERM after student step 6 ") == 1, proc.stderr[-3000:]
    # No traceback from the workers (torchrun prints its own for the exit status 143).
    assert not [line for line in proc.stderr.splitlines() if line.strip().startswith("File") and "datafree" in line]
    assert [state["step"] for state in _states(run)] == [6, 6]
    # The interrupted run logged past its last state: the resume must not repeat those rows.
    proc = torchrun("distill", *distill, f"resume={run}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _equal(torch.load(run / "student.pt", weights_only=True)["state_dict"],
                  torch.load(reference / "student.pt", weights_only=True)["state_dict"])
    for got, expected in zip(_states(run), _states(reference)):
        assert _equal(got["student"], expected["student"]) and torch.equal(got["pool"]["images"], expected["pool"]["images"])
    assert _rows(run) == rows
    assert _scalars(run) == _scalars(reference)


@pytest.mark.long(20)
def test_a_torchvision_student_trains_as_one_network_on_two_processes(tmp_path):
    run = tmp_path / "run"
    proc = torchrun("distill", *[a for a in DISTILL if not a.startswith("student=")], "student=torchvision",
                    "student.name=mobilenet_v3_small", f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("student torchvision:mobilenet_v3_small: test accuracy") == 1
    first, second = _states(run)
    assert _equal(first["student"], second["student"])  # DDP kept the ranks' copies one network


@pytest.mark.long(13)
def test_a_rank_that_dies_stops_the_other_with_a_message(tmp_path):
    proc = torchrun("1", "-5", "distill", *DISTILL, f"hydra.run.dir={tmp_path / 'run'}", script=_killer(tmp_path))
    assert proc.returncode != 0
    assert "datafree: error: lost contact with the other processes (" in proc.stderr, proc.stderr[-3000:]
    assert "resume=RUN_DIR" in proc.stderr and "exitcode  : 3" in proc.stderr  # torchrun names the rank that died


# The CLI with one patch: the distillation trainer refuses to start on rank 1 only.
REFUSED_ON_RANK_ONE = """
import os, sys
from datafree.distill import trainer
from datafree.errors import DatafreeError
from datafree.cli import main

start = trainer.Distiller.__init__

def refused_on_rank_one(self, *args, **kwargs):
    if os.environ["RANK"] == "1":
        raise DatafreeError("rank 1 alone is refused")
    return start(self, *args, **kwargs)

trainer.Distiller.__init__ = refused_on_rank_one
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.long(35)
def test_a_refusal_every_rank_reaches_is_printed_once_and_one_rank_alone_says_its_own(tmp_path, shapes_teacher_path):
    teacher = [a for a in DISTILL if not a.startswith("teacher")] + ["teacher=checkpoint",
                                                                     f"teacher.checkpoint={shapes_teacher_path}"]
    proc = torchrun("distill", *teacher, "trainer.batch_size=-3", f"hydra.run.dir={tmp_path / 'every'}")
    assert proc.returncode != 0 and "exitcode  : 2" in proc.stderr  # torchrun's own status is 1
    assert proc.stderr.count("datafree: error:") == 1, proc.stderr[-3000:]  # rank 0's; rank 1 saw it is the same
    assert "datafree: error: trainer.batch_size must be auto or an int >= 1, got -3" in proc.stderr
    proc = torchrun("distill", *teacher, f"hydra.run.dir={tmp_path / 'one'}",
                    script=_killer(tmp_path, REFUSED_ON_RANK_ONE))
    assert proc.returncode != 0
    assert "datafree: error: [rank 1] rank 1 alone is refused" in proc.stderr, proc.stderr[-3000:]


def _killer(tmp_path: Path, text: str = KILLER) -> str:
    path = tmp_path / "killer.py"
    path.write_text(text)
    return str(path)


# DeepInversion on the 8x8 shapes teacher: 16 images per rank and draw, 4 shards.
SYNTHESIZE = ["n=100", "shard_size=30", "class_counts=as_drawn", "synthesizer.batch_size=16", "synthesizer.iterations=5",
              "device=cpu", "progress=false"]


# Joins the group as the CLI does, takes one optimiser step (it imports torch._dynamo, which used to pin the
# group), leaves: gloo's worker threads must be gone then, or they outlive the interpreter and now and then
# abort the process at exit.
SHUTDOWN = """
import os, torch
from datafree.utils import dist

def threads():
    return len(os.listdir("/proc/self/task"))

alone = threads()
dist.init("cpu", 60)
x = torch.zeros(3, requires_grad=True)
optimizer = torch.optim.Adam([x])
x.sum().backward()
optimizer.step()
dist.barrier()
assert threads() > alone
dist.shutdown()
print("threads", alone, threads())
assert threads() <= alone + 1, (alone, threads())  # + 1: a thread the first optimiser step may leave (dynamo)
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads through /proc (Linux)")
@pytest.mark.long(12)
def test_leaving_the_group_stops_its_threads(tmp_path):
    script = tmp_path / "shutdown.py"
    script.write_text(SHUTDOWN)
    proc = torchrun(script=str(script))
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.long(12)
def test_synthesize_on_two_processes_writes_one_data_set(tmp_path, shapes_teacher_path):
    overrides = [*SYNTHESIZE, f"teacher.checkpoint={shapes_teacher_path}"]
    out = tmp_path / "set"
    proc = torchrun("synthesize", *overrides, f"out={out}", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("synthetic data set: 100 samples") == 1
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", *(f"shard_0000{k}.pt" for k in range(4))]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["processes"] == 2 and manifest["drawn"] == 128
    synthetic = SyntheticSet(out)
    samples = synthetic.load()
    assert synthetic.verify() == [] and samples.indices.tolist() == list(range(100))
    # Kept in draw order, rank 0's batch first: rank 0 drew what one process with the seed draws, rank 1 other images.
    _uninterrupted([*overrides, "n=16"], tmp_path / "alone", tmp_path / "alone_run")  # one thread, as torchrun's workers
    alone = SyntheticSet(tmp_path / "alone").load()
    assert torch.equal(samples.images[:16], alone.images) and torch.equal(samples.logits[:16], alone.logits)
    assert len(torch.unique(samples.images.flatten(1), dim=0)) == 100


@pytest.mark.slow
def test_synthesize_on_two_processes_stopped_and_continued_gives_the_uninterrupted_set(tmp_path, shapes_teacher_path):
    overrides = [*SYNTHESIZE, f"teacher.checkpoint={shapes_teacher_path}"]
    whole = torchrun("synthesize", *overrides, f"out={tmp_path / 'whole'}", f"hydra.run.dir={tmp_path / 'whole_run'}")
    assert whole.returncode == 0, whole.stderr[-3000:]
    out = tmp_path / "set"
    # SIGTERM to rank 1 while it labels its 2nd batch: both stop before the 3rd draw, 64 drawn, 60 in 2 shards.
    proc = torchrun("1", "2", "synthesize", *overrides, f"out={out}", f"hydra.run.dir={tmp_path / 'run'}",
                    script=_killer(tmp_path, SYNTHESIS_KILLER))
    assert proc.stderr.count("datafree: interrupted: stopped by SIGTERM after 2 complete shards") == 1, proc.stderr[-3000:]
    proc = torchrun("synthesize", *overrides, f"out={out}", f"hydra.run.dir={tmp_path / 'again'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in sorted(p.name for p in (tmp_path / "whole").glob("shard_*.pt")):
        assert (out / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
