"""Teachers from outside the zoo through the CLI: TorchScript, ensembles, the user's class.

They run in this process (the same code as the command, without an interpreter start-up each), except the
user's unimportable class, whose import depends on the process; a user's class found through PYTHONPATH in a
subprocess is tests/docs/test_custom_teacher_guide.py's.
"""
import warnings

import pytest

import torch

from nets import GroupNormNet, calibrated_bn_net
from test_cli import TINY, _assert_clean_failure, _info, in_process, run_cli
from test_cli_resume import _interrupt_and_resume
from datafree.models import create_model
from datafree.teachers import save_classifier

FAST_DFAD = ["synthesizer=dfad", "synthesizer.batch_size=16", "synthesizer.latent_dim=16", "trainer=adversarial_demo",
             "trainer.rounds=2", "trainer.student_steps=2", "trainer.batch_size=16", "student=microcnn",
             "noise_baseline=false", "device=cpu", "progress=false"]


def _torchscript(tmp_path):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(calibrated_bn_net(num_classes=4, size=16)), str(tmp_path / "t.ts"))
    return tmp_path / "t.ts"


def test_torchscript_teacher_without_any_data(tmp_path, capsys):
    out = tmp_path / "run"
    proc = in_process(capsys, "distill", "data=none", "teacher=torchscript", f"teacher.checkpoint={_torchscript(tmp_path)}",
                    "teacher.input_size=[3,16,16]", *FAST_DFAD, f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "student microcnn: test accuracy n/a" in proc.stdout and "hooks cannot attach" in proc.stdout + proc.stderr
    student = torch.load(out / "student.pt", weights_only=True)
    assert student["num_classes"] == 4 and student["input_size"] == [3, 16, 16]


def _refused(proc, out, *needles):
    """A refusal: one line on stderr, exit status 2, nothing written."""
    _assert_clean_failure(proc, out, *needles)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr


def test_torchscript_teacher_refused_by_deepinversion(tmp_path, capsys):
    out = tmp_path / "run"
    proc = in_process(capsys, "distill", "data=none", "teacher=torchscript", f"teacher.checkpoint={_torchscript(tmp_path)}",
                    "teacher.input_size=[3,16,16]", "synthesizer=deepinversion", "device=cpu", f"hydra.run.dir={out}")
    _refused(proc, out, "cannot attach to a TorchScript teacher", "synthesizer=dfad")


def test_groupnorm_teacher_refused_by_deepinversion_distilled_by_dfad(tmp_path, capsys):
    torch.manual_seed(0)
    torch.save({"model": GroupNormNet(10).state_dict()}, tmp_path / "gn.pt")
    common = ["data.test.n=100", "teacher=module", "teacher.model._target_=nets.GroupNormNet",
              "+teacher.model.num_classes=10", f"teacher.checkpoint={tmp_path / 'gn.pt'}"]
    out = tmp_path / "run"
    proc = in_process(capsys, "distill", *common, "synthesizer=deepinversion", "device=cpu", f"hydra.run.dir={out}")
    _refused(proc, out, "DeepInversion", "GroupNorm, LayerNorm", "synthesizer=dfad")
    proc = in_process(capsys, "distill", *common, *FAST_DFAD, f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "teacher nets.GroupNormNet: test accuracy" in proc.stdout and (out / "student.pt").is_file()


def test_a_teacher_without_batchnorm_distilled_on_images_the_user_gives(tmp_path, capsys):
    """synthesizer=images: any folder of images (here loose and in a folder, of two sizes), read at the teacher's
    size and labelled by the teacher; the log says it is not data-free."""
    from PIL import Image

    torch.manual_seed(0)
    torch.save({"model": GroupNormNet(10).state_dict()}, tmp_path / "gn.pt")
    (tmp_path / "images" / "sub").mkdir(parents=True)
    for k in range(12):
        size = 20 if k % 2 else 12
        pixels = torch.randint(0, 256, (size, size, 3), dtype=torch.uint8).numpy()
        Image.fromarray(pixels).save(tmp_path / "images" / ("sub" if k % 3 else "") / f"{k}.png")
    common = ["data.test.n=100", "teacher=module", "teacher.model._target_=nets.GroupNormNet",
              "+teacher.model.num_classes=10", f"teacher.checkpoint={tmp_path / 'gn.pt'}", "student=microcnn",
              "trainer=fast_demo", "trainer.rounds=2", "trainer.student_steps=2", "trainer.batch_size=16",
              "noise_baseline=false", "device=cpu", "progress=false"]
    out = tmp_path / "run"
    proc = in_process(capsys, "distill", *common, "synthesizer=images", "synthesizer.batch_size=8", f"hydra.run.dir={out}")
    _refused(proc, out, "synthesizer.path must be set", "synthesizer.path=")
    proc = in_process(capsys, "distill", *common, "synthesizer=images", "synthesizer.batch_size=8",
                      f"synthesizer.path={tmp_path / 'nowhere'}", f"hydra.run.dir={out}")
    _refused(proc, out, "synthesizer.path", "does not exist")
    proc = in_process(capsys, "distill", *common, "synthesizer=images", "synthesizer.batch_size=8",
                      f"synthesizer.path={tmp_path / 'images'}", f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "student microcnn: test accuracy" in proc.stdout
    log = (out / "distill.log").read_text()
    assert "synthesizer: 12 images from" in log and "at 16x16" in log and "not data-free" in log


def test_ensemble_of_two_checkpoints(tmp_path, capsys):
    paths = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        paths.append(save_classifier(tmp_path / f"t{seed}.pt", create_model("microcnn", num_classes=10), _info()))
    members = "[" + ", ".join(f"{{source: datafree, checkpoint: '{p}'}}" for p in paths) + "]"
    out = tmp_path / "run"
    proc = in_process(capsys, "distill", "data.image_size=8", "data.test.n=100", "teacher=ensemble",
                      f"teacher.members={members}", "synthesizer.batch_size=16", "synthesizer.iterations=2",
                      "trainer.rounds=2", "trainer.student_steps=2", "trainer.batch_size=16", "noise_baseline=false",
                      "device=cpu", "progress=false", f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "teacher ensemble[microcnn, microcnn]: test accuracy" in proc.stdout


def test_unimportable_user_class_fails_cleanly(tmp_path):
    torch.save(calibrated_bn_net().state_dict(), tmp_path / "w.pt")
    out = tmp_path / "run"
    proc = run_cli("distill", "teacher=module", "teacher.model._target_=my_missing_pkg.Net",
                   f"teacher.checkpoint={tmp_path / 'w.pt'}", "device=cpu", f"hydra.run.dir={out}")
    _refused(proc, out, "my_missing_pkg.Net", "PYTHONPATH")


@pytest.mark.parametrize("command, overrides, needles", [
    ("distill", ["teacher=module"], ["teacher.checkpoint, teacher.model._target_ must be set"]),
    ("distill", ["data=none"], ["no teacher.checkpoint, and no labelled data"]),
    ("distill", ["teacher=torchvision", "teacher.checkpoint=/no/such.pt"], ["does not exist"]),
    ("train-teacher", ["teacher=module"], ["teacher.model._target_ must be set"]),
    ("train-teacher", ["teacher=torchscript"], ["not a teacher.source=torchscript teacher", "datafree distill"]),
])
def test_teacher_recipe_mistakes_fail_cleanly(tmp_path, capsys, command, overrides, needles):
    out = tmp_path / "run"
    proc = in_process(capsys, command, *overrides, "device=cpu", f"hydra.run.dir={out}")
    _refused(proc, out, *needles)


def test_unknown_feature_layer_fails_before_the_teacher_is_trained(tmp_path, capsys):
    out = tmp_path / "run"
    proc = in_process(capsys, "distill", "experiment=demo_zskt", "trainer.attention.teacher_layers=[features.2, features.77]",
                   "device=cpu", f"hydra.run.dir={out}")
    _refused(proc, out, "teacher layer(s) ['features.77'] not found")


def test_student_class_count_is_checked_before_the_teacher_is_trained(tmp_path, capsys):
    out = tmp_path / "run"
    proc = in_process(capsys, "distill", "student.num_classes=3", "device=cpu", f"hydra.run.dir={out}")
    _refused(proc, out, "student.num_classes=3 but the data has 10 classes")
    assert "training one first" not in proc.stdout


@pytest.mark.long(20)
def test_a_run_on_images_resumes_bitwise(tmp_path, capsys):
    """The images drawn come from the device's random stream, which the run's state carries: a run stopped three
    times and resumed ends with the student of a run never stopped."""
    from PIL import Image

    torch.manual_seed(0)
    ckpt = save_classifier(tmp_path / "t.pt", create_model("nobn_cnn", num_classes=10), _info("nobn_cnn"))
    (tmp_path / "images").mkdir()
    for k in range(20):
        Image.fromarray(torch.randint(0, 256, (8, 8, 3), dtype=torch.uint8).numpy()).save(tmp_path / "images" / f"{k}.png")
    args = [*[a for a in TINY if not a.startswith(("synthesizer.", "trainer."))], f"teacher.checkpoint={ckpt}",
            "teacher.arch=nobn_cnn", "synthesizer=images", "synthesizer.batch_size=16",
            f"synthesizer.path={tmp_path / 'images'}", "trainer=fast_demo", "trainer.rounds=3", "trainer.student_steps=2",
            "trainer.batch_size=16", "noise_baseline=false"]
    _interrupt_and_resume(tmp_path, capsys, "distill", args, 6, "student.pt")
