"""``datafree deploy`` and ``datafree report`` as users run them on a distill run of the demo's networks: the files,
the report's values, the headline a distill run ends with, and one clean line for each bad input."""
import contextlib
import io
import json
import sys

import pytest
import torch

from datafree import cli
from test_cli import TINY, _assert_clean_failure, in_process


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny demo distill run (shapes teacher trained first, DeepInversion, microcnn student) and what it printed."""
    out = tmp_path_factory.mktemp("ship") / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli.main(["distill", *TINY, "trainer.rounds=3", "noise_baseline=false", f"hydra.run.dir={out}"])
    assert code == 0
    return out, printed.getvalue()


def test_a_distill_run_ends_with_the_reports_headline(run_dir):
    _, printed = run_dir
    line = next(line for line in printed.splitlines() if line.startswith("report: student "))
    for part in ("kB file", "parameters", "MACs", "CPU latency", "at batch 1", "ECE"):
        assert part in line, line
    assert "accuracy" not in line  # printed once, by distill, on the line above


@pytest.fixture(scope="module")
def deploy_dir(run_dir, tmp_path_factory):
    run, _ = run_dir
    out = tmp_path_factory.mktemp("deployed") / "deploy"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli.main(["deploy", f"run={run}", "formats=[onnx,torchscript]", "int8=true", "int8_min_agreement=0",
                         "check_images=64", "calibration_images=64", "latency=false", f"hydra.run.dir={out}"])
    assert code == 0
    return out, printed.getvalue()


def test_deploy_from_a_run_uses_its_synthetic_images_and_real_data(deploy_dir, run_dir):
    out, printed = deploy_dir
    assert "synthetic images: 64 (" in printed and "from the run's replay pool" in printed
    assert "real images: 200 test, 400 training (the run's data)" in printed
    manifest = json.loads((out / "deploy.json").read_text())
    assert set(manifest["files"]) == {"student.onnx", "student.ts", "student.int8.onnx"}
    assert manifest["student"]["checkpoint"] == str(run_dir[0] / "student.pt")
    for entry in manifest["files"].values():
        assert (out / [name for name, e in manifest["files"].items() if e is entry][0]).is_file()
    assert manifest["int8"]["calibration_comparison"]["images"] == 64  # real training images exist: compared
    assert "int8:" in printed and "calibrated on 64 real images instead" in printed


@pytest.mark.parametrize("student, label", [
    (["student=torchvision", "student.name=mobilenet_v3_small"], "torchvision:mobilenet_v3_small"),
    (["student=timm", "student.name=test_efficientnet"], "timm:test_efficientnet"),
    # the user's own class: the run's recipe builds it (the checkpoint alone cannot, test below)
    (["student=module", "student.model._target_=nets.TinyBNNet", "+student.model.num_classes=10"], "nets.TinyBNNet"),
])
@pytest.mark.long(20)
def test_students_from_every_source_ship_from_their_runs(tmp_path, student, label):
    """deploy rebuilds the student from the label its checkpoint carries, or, for a class of the user's, as the
    run's recipe built it; each file is checked against it."""
    run, out = tmp_path / "run", tmp_path / "deploy"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli.main(["distill", *[a for a in TINY if not a.startswith("student=")], *student,
                         "noise_baseline=false", f"hydra.run.dir={run}"]) == 0
        assert cli.main(["deploy", f"run={run}", "formats=[onnx,export]", "int8=true", "int8_min_agreement=0",
                         "check_images=32", "calibration_images=32", "latency=false", f"hydra.run.dir={out}"]) == 0
    assert f"student {label} from {run / 'student.pt'}" in printed.getvalue()
    manifest = json.loads((out / "deploy.json").read_text())
    assert set(manifest["files"]) == {"student.onnx", "student.pt2", "student.int8.onnx"}
    assert manifest["student"]["arch"] == label


def test_a_student_of_the_users_own_class_from_its_file_alone_says_to_give_its_run(tmp_path, capsys, monkeypatch):
    run, out = tmp_path / "run", tmp_path / "deploy"
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["distill", *[a for a in TINY if not a.startswith("student=")], "student=module",
                         "student.model._target_=nets.TinyBNNet", "+student.model.num_classes=10",
                         "noise_baseline=false", f"hydra.run.dir={run}"]) == 0
    proc = in_process(capsys, "deploy", f"checkpoint={run / 'student.pt'}", f"hydra.run.dir={out}")
    _assert_clean_failure(proc, out, "holds a nets.TinyBNNet network, which only its own class builds: give "
                                     "run=RUN_DIR (the distill run's folder")
    # From its run, without the class on the Python path (PYTHONPATH=. forgotten): the line named
    # teacher.model._target_ for the student's class, a key of a teacher the user never wrote.
    monkeypatch.setitem(sys.modules, "nets", None)
    for command in ("deploy", "report"):
        proc = in_process(capsys, command, f"run={run}", f"hydra.run.dir={out}")
        _assert_clean_failure(proc, out, "datafree: error: student.model._target_='nets.TinyBNNet' cannot be imported")


def test_report_writes_every_file_with_sane_values(shapes_student, shapes_teacher, deployed, tmp_path, capsys):
    """The demo's networks trained on shapes (teacher about 74%, student about 39%, int8 from synthetic calibration)
    against the same 400 test images: values are only sane to check on networks well above chance (10%)."""
    folder, _ = deployed
    out = tmp_path / "report"
    proc = in_process(capsys, "report", f"checkpoint={shapes_student.path}", f"teacher.checkpoint={shapes_teacher.path}",
                      f"deployed={folder}", "data=shapes", "data.image_size=16", "data.test.n=400",
                      "min_run_time=0.05", f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("report.json", "report.md", "accuracy_latency.png", "reliability.png", "corruptions.png"):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    rows = {row["name"]: row for row in report["models"]}
    assert list(rows) == ["teacher", "student", "student ONNX", "student int8 ONNX"]
    assert report["test_images"] == 400
    # Two standard errors of the difference of two accuracies on 400 images, at most (mild noise can help a weak
    # student: the shapes student gains about 5 points from Gaussian noise at severity 3).
    noise = 2 * (2 * 0.25 / 400) ** 0.5
    for name, row in rows.items():
        assert 0.2 <= row["accuracy"] <= 1.0, name  # well above chance: the checks below mean something
        assert 0.0 <= row["ece"] <= 1.0
        assert row["cpu_latency_ms_batch1"]["median_ms"] > 0 and row["parameters"] > 0 and row["macs"] > 0
        assert row["file_bytes"] > 0
        assert len(row["per_class_accuracy"]) == 10 and len(row["reliability"]) == 15
        assert sum(b["count"] for b in row["reliability"]) == 400
        for corruption, curve in row["corruptions"].items():
            assert len(curve) == 3 and all(0 <= value <= row["accuracy"] + noise for value in curve), (name, corruption)
        assert row["mean_corruption_accuracy"] < row["accuracy"], name  # on average, corruptions cost accuracy
    assert rows["teacher"]["accuracy"] > rows["student"]["accuracy"]
    assert rows["teacher"]["parameters"] > rows["student"]["parameters"]
    student, onnx, int8 = rows["student"], rows["student ONNX"], rows["student int8 ONNX"]
    assert onnx["accuracy"] == student["accuracy"] and onnx["agreement"] == student["agreement"]
    assert 0.0 <= student["agreement"] <= 1.0 and abs(int8["accuracy"] - student["accuracy"]) <= 0.03
    assert int8["file_bytes"] < onnx["file_bytes"]
    assert 0.0 <= student["cka_with_teacher"] <= 1.0 + 1e-9 and onnx["cka_with_teacher"] is None
    assert student["peak_memory_bytes"]["bytes"] > student["weight_bytes"] > 0
    assert "GPU throughput: no CUDA device" in report["skipped"] or torch.cuda.is_available()
    markdown = (out / "report.md").read_text()
    assert "| student int8 ONNX | onnxruntime |" in markdown and "![reliability diagrams](reliability.png)" in markdown
    # the memory column says where it was measured (the GPU's allocator at a large batch, or the CPU at batch 1)
    assert f"peak memory: {student['peak_memory_bytes']['where']}." in markdown


def test_a_report_without_test_data_reports_what_needs_no_labels(run_dir, tmp_path, capsys):
    run, _ = run_dir
    out = tmp_path / "report"
    proc = in_process(capsys, "report", f"run={run}", "data=none", "latency=false", "cka_images=64",
                      f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "not measured: accuracy, calibration, per-class accuracy and corruptions: no test images" in proc.stdout
    student = json.loads((out / "report.json").read_text())["models"][1]
    assert "accuracy" not in student and "ece" not in student
    assert 0.0 <= student["agreement"] <= 1.0 and "replay pool" in student["agreement_images"]
    assert student["cka_with_teacher"] is not None
    assert not (out / "reliability.png").exists()


def test_bad_inputs_get_one_line_and_leave_nothing(run_dir, tmp_path, capsys):
    run, _ = run_dir
    foreign = tmp_path / "weights.pt"
    torch.save({"conv.weight": torch.zeros(2)}, foreign)
    out = tmp_path / "out"
    cases = [
        (["deploy", f"checkpoint={foreign}"], "is not a datafree student or teacher"),
        (["report", f"checkpoint={foreign}"], "is not a datafree student or teacher"),
        (["deploy", f"checkpoint={run / 'student.pt'}", "int8=true"],
         "int8=true calibrates on synthetic images and there are none"),
        (["deploy", f"run={run}", "formats=[onnx,tflite]"], "formats must be a list of onnx, torchscript, export"),
        (["deploy", f"run={run}", "formats=[torchscript]", "int8=true"], "int8=true quantises the ONNX file"),
        (["deploy"], "no student: give run=RUN_DIR"),
        (["deploy", f"run={run}", f"checkpoint={run / 'student.pt'}"], "both name a student"),
        (["report", f"run={tmp_path}"], "holds no student.pt"),
        (["report", f"run={run}", f"deployed={tmp_path}"], "holds no deploy.json"),
    ]
    for arguments, needle in cases:
        proc = in_process(capsys, *arguments, f"hydra.run.dir={out}")
        _assert_clean_failure(proc, out, needle)
        assert proc.stderr.count("\n") == 1, proc.stderr
    # its output into the run's own folder: told to write elsewhere (deploy has no resume=true, which it was told to add)
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    proc = in_process(capsys, "deploy", f"run={run}", f"hydra.run.dir={run}")
    assert proc.returncode == 2 and f"{run} holds a run (state_last.pt): choose another hydra.run.dir" in proc.stderr
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before


def test_deploy_and_report_of_a_run_read_its_relative_paths_from_the_folder_it_ran_in(tmp_path, capsys, monkeypatch):
    """A run started as 'distill data=imagefolder data.root=images' from the project folder, deployed and reported from
    another one: 'data.root images holds no test/ folder' (and 'teacher.checkpoint ... does not exist' for a teacher
    given by a relative path), as if the user had named that folder's images. They are read where the run read them."""
    from PIL import Image

    from datafree.data import make_shapes

    project = tmp_path / "project"
    for split, n, seed in (("train", 160, 1), ("test", 80, 2)):
        shapes = make_shapes(n, image_size=8, seed=seed, num_classes=4)
        for i, (image, label) in enumerate(zip(shapes.images, shapes.labels)):
            folder = project / "images" / split / shapes.classes[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{i}.png")
    monkeypatch.chdir(project)
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["distill", "data=imagefolder", "data.root=images", "data.image_size=8", "data.batch_size=32",
                         *[a for a in TINY if a.split("=")[0] in ("teacher", "teacher.arch", "teacher.train.epochs",
                                                                  "student", "synthesizer.batch_size",
                                                                  "synthesizer.iterations", "trainer.rounds",
                                                                  "trainer.student_steps", "trainer.batch_size",
                                                                  "device", "progress")],
                         "noise_baseline=false", "hydra.run.dir=run"]) == 0
    (tmp_path / "elsewhere" / "images").mkdir(parents=True)  # a folder of the same name here: not the run's
    monkeypatch.chdir(tmp_path / "elsewhere")
    proc = in_process(capsys, "report", f"run={project / 'run'}", "latency=false", "corruption_images=16",
                      f"hydra.run.dir={tmp_path / 'report'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "no test images" not in proc.stdout
    assert json.loads((tmp_path / "report" / "report.json").read_text())["test_images"] == 80
