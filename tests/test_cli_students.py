"""Any student, any teacher: torchvision, timm and the user's class through the CLI, on small networks at 8 px.

The runs are in this process (see test_cli.py); the interrupted ones are subprocesses with a real SIGTERM
(test_cli_resume.py's harness).
"""
import sys
import warnings

import pytest
import torch
import torchvision

from nets import TinyBNNet
from test_cli import TINY, _assert_clean_failure, in_process
from test_cli_resume import run_killed
from datafree.teachers import load_teacher

# The TINY demo run (a microcnn teacher trained first on 8 px shapes), without its student and noise baseline.
BASE = [a for a in TINY if not a.startswith("student=")] + ["noise_baseline=false"]
MOBILENET = ["student=torchvision", "student.name=mobilenet_v3_small"]


def _run(capsys, out, *args):
    proc = in_process(capsys, "distill", *BASE, *args, f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _log(out, command="distill"):
    return (out / f"{command}.log").read_text()


@pytest.mark.parametrize("student, label", [
    (MOBILENET, "torchvision:mobilenet_v3_small"),
    # its constructor reads numbers back from tensors, which the meta device of the layer checks cannot give
    (["student=torchvision", "student.name=regnet_x_400mf"], "torchvision:regnet_x_400mf"),
    (["student=timm", "student.name=test_efficientnet"], "timm:test_efficientnet"),
    (["student=module", "student.model._target_=nets.TinyBNNet", "+student.model.num_classes=10"], "nets.TinyBNNet"),
])
def test_students_from_every_source_distil_and_load_back(tmp_path, capsys, student, label):
    proc = _run(capsys, tmp_path / "run", *student)
    assert f"student {label}: test accuracy" in proc.stdout
    saved = torch.load(tmp_path / "run" / "student.pt", weights_only=True)
    assert saved["arch"] == label and saved["num_classes"] == 10 and saved["input_size"] == [3, 8, 8]
    if label.startswith(("torchvision", "timm")):  # rebuilt from its label, weights as saved
        back = load_teacher("datafree", checkpoint=str(tmp_path / "run" / "student.pt"))
        assert back.info.arch == label and torch.equal(back.model.model.state_dict()[next(iter(saved["state_dict"]))],
                                                      next(iter(saved["state_dict"].values())))
    else:  # the user's class: only it can build the network, and the message says how
        with pytest.raises(Exception, match=r"teacher=module teacher.model._target_=nets.TinyBNNet"):
            load_teacher("datafree", checkpoint=str(tmp_path / "run" / "student.pt"))


# torchvision's files, timm's and a Lightning module's (every key under "model.")
@pytest.mark.parametrize("saved_as", ["imagenet.pth", "model.safetensors", "last.ckpt"])
def test_a_student_starts_from_weights_with_another_head(tmp_path, capsys, saved_as):
    torch.manual_seed(0)
    imagenet = torchvision.models.mobilenet_v3_small(num_classes=1000)  # "ImageNet weights on the user's disk"
    if saved_as.endswith(".pth"):
        torch.save({"model": imagenet.state_dict()}, tmp_path / saved_as)
    elif saved_as.endswith(".ckpt"):
        torch.save({"state_dict": {f"model.{k}": v for k, v in imagenet.state_dict().items()}}, tmp_path / saved_as)
    else:
        from safetensors.torch import save_file
        save_file(imagenet.state_dict(), str(tmp_path / saved_as))
    _run(capsys, tmp_path / "run", *MOBILENET, f"student.checkpoint={tmp_path / saved_as}",
         "trainer.rounds=1", "trainer.student_steps=0")
    log = _log(tmp_path / "run")
    # said once: the checks that build the student before the run's own do not say it again
    assert log.count("classifier.3.weight, classifier.3.bias) is for 1000 classes; it starts fresh for 10") == 1
    assert ("the network's weights are those under 'model.'" in log) == saved_as.endswith(".ckpt")
    saved = torch.load(tmp_path / "run" / "student.pt", weights_only=True)["state_dict"]
    assert torch.equal(saved["features.0.0.weight"], imagenet.state_dict()["features.0.0.weight"])


def test_a_layer_pair_term_names_a_torchvision_students_own_modules(tmp_path, capsys):
    _run(capsys, tmp_path / "run", *MOBILENET, "trainer.attention.weight=10",
         "trainer.attention.teacher_layers=[features.2]", "trainer.attention.student_layers=[features.1]")
    assert "student loss: kd + attention" in _log(tmp_path / "run")


@pytest.mark.long(15)
def test_a_torchvision_student_resumes_bitwise(tmp_path, capsys):
    # stopped in the middle of the learning-rate warm-up: the resumed steps must take the rates they would have had
    args = [*BASE, *MOBILENET, "trainer.rounds=3", "trainer.student_steps=2", "trainer.checkpoint_every=2",
            "trainer.warmup_steps=5"]
    proc = in_process(capsys, "distill", *args, f"hydra.run.dir={tmp_path / 'reference'}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "the student trains channels_last on the CPU" in _log(tmp_path / "reference", "distill")
    run = tmp_path / "run"
    killed = run_killed("distill", 3, *args, f"hydra.run.dir={run}")
    assert killed.returncode == 143 and "stopped by SIGTERM after student step 3" in killed.stderr, killed.stderr[-2000:]
    proc = in_process(capsys, "distill", *args, f"resume={run}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    expected = torch.load(tmp_path / "reference" / "student.pt", weights_only=True)["state_dict"]
    got = torch.load(run / "student.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_train_teacher_fine_tunes_a_torchvision_network_from_a_checkpoint(tmp_path, capsys):
    torch.manual_seed(0)
    start = torchvision.models.mobilenet_v3_small(num_classes=1000)
    torch.save(start.state_dict(), tmp_path / "start.pth")
    teacher = [a for a in TINY if a.split("=")[0].split(".")[0] in ("data", "device", "progress")]
    proc = in_process(capsys, "train-teacher", *teacher, "teacher=torchvision", "teacher.name=mobilenet_v3_small",
                      f"teacher.checkpoint={tmp_path / 'start.pth'}", "teacher.train.epochs=1", "teacher.train.lr=0.01",
                      f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = _log(tmp_path / "run", "train-teacher")
    assert "starts fresh for 10" in log and "the teacher trains channels_last on the CPU" in log
    # torchvision's MobileNetV3 momentum of 0.01 would leave the trained teacher's running statistics behind its weights
    assert "teacher: BatchNorm momentum 0.01 -> 0.1 in 34 of 34 layers for this run (teacher.train.bn_momentum=auto)" in log
    assert "teacher torchvision:mobilenet_v3_small: test accuracy" in proc.stdout
    trained = load_teacher("datafree", checkpoint=str(tmp_path / "run" / "teacher.pt"))
    assert trained.info.arch == "torchvision:mobilenet_v3_small" and trained.info.input_size == (3, 8, 8)


def test_a_teacher_left_answering_one_class_is_named_with_what_to_change(tmp_path, capsys):
    """At torchvision's own momentum of 0.01 a MobileNetV3 trained for one short epoch is judged on running statistics
    that have hardly moved from their start: it answers one class, and the log says which setting to change."""
    teacher = [a for a in TINY if a.split("=")[0].split(".")[0] in ("data", "device", "progress")]
    proc = in_process(capsys, "train-teacher", *teacher, "teacher=torchvision", "teacher.name=mobilenet_v3_small",
                      "teacher.train.epochs=1", "teacher.train.bn_momentum=keep", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = _log(tmp_path / "run", "train-teacher")
    assert "of the test images (test accuracy" in log and "a teacher that answers one class has nothing to teach" in log
    assert "(teacher.train.bn_momentum=keep) leaves the running statistics" in log
    assert "set teacher.train.bn_momentum=auto" in log


def test_a_collapsed_teacher_without_lagging_statistics_is_told_to_train_longer():
    from omegaconf import OmegaConf

    from datafree.jobs import collapsed_teacher
    from datafree.models import create_model

    said = collapsed_teacher({"top_class": 2, "top_class_share": 0.95, "test_accuracy": 0.1}, ["a", "b", "c"],
                             create_model("resnet18", num_classes=3),
                             OmegaConf.create({"bn_momentum": "auto", "epochs": 3, "lr": "auto"}), 0.2)
    assert said.startswith("the trained teacher gives class 'c' (2) to 95.0% of the test images (test accuracy 10.00%)")
    assert "teacher.train.epochs, now 3" in said and "teacher.train.lr, now 0.2 from auto" in said and "momentum" not in said


def test_train_teacher_builds_the_checkpoints_network_with_its_weights(tmp_path):
    """The fine-tuning start: every layer but the fresh head holds the checkpoint's weights (a grey first layer
    summed from the RGB one)."""
    from omegaconf import OmegaConf

    from datafree.jobs import teacher_network

    torch.manual_seed(0)
    start = torchvision.models.resnet18(num_classes=1000)
    torch.save(start.state_dict(), tmp_path / "r18.pth")
    cfg = OmegaConf.create({"teacher": {"source": "torchvision", "name": "resnet18", "checkpoint": str(tmp_path / "r18.pth")}})
    net, label = teacher_network(cfg, num_classes=5, in_channels=1)
    assert label == "torchvision:resnet18" and net.fc.out_features == 5
    assert torch.equal(net.conv1.weight, start.conv1.weight.sum(1, keepdim=True))
    assert torch.equal(net.layer4[1].conv2.weight, start.layer4[1].conv2.weight)


@pytest.mark.parametrize("command", ["distill", "train-teacher"])
def test_start_weights_for_another_colour_count_are_refused_before_any_work(tmp_path, capsys, command):
    """RGBA weights for an RGB network: no channel of one stands for a channel of the other (only grey and colour are
    adapted to each other), so the run stops naming the layer, both counts and what to set."""
    rgba = torchvision.models.resnet18(num_classes=1000)
    rgba.conv1 = torch.nn.Conv2d(4, 64, 7, 2, 3, bias=False)
    torch.save(rgba.state_dict(), tmp_path / "rgba.pth")
    out, weights = tmp_path / "run", tmp_path / "rgba.pth"
    if command == "distill":
        proc = in_process(capsys, "distill", *BASE, "student=torchvision", "student.name=resnet18",
                          f"student.checkpoint={weights}", f"hydra.run.dir={out}")
        fix = "or leave student.checkpoint out to start from random weights (the student takes the teacher's channels)."
    else:
        teacher = [a for a in TINY if a.split("=")[0].split(".")[0] in ("data", "device", "progress")]
        proc = in_process(capsys, "train-teacher", *teacher, "teacher=torchvision", "teacher.name=resnet18",
                          f"teacher.checkpoint={weights}", f"hydra.run.dir={out}")
        fix = "set data.channels=4 to train on 4-channel images, or set teacher.checkpoint=null to train from scratch."
    what = "student" if command == "distill" else "teacher"
    _assert_clean_failure(proc, out, f"{what}.checkpoint '{weights}': its first convolution (conv1.weight) takes 4 "
                          "channels and this network 3: only grey weights (1 channel) are adapted to more channels, and "
                          f"weights of any count to grey. Start from weights saved for 3 channels or 1, {fix}")
    assert proc.stderr.count("\n") == 1


def test_train_teacher_fine_tunes_the_network_a_datafree_checkpoint_names(tmp_path, capsys):
    """teacher=checkpoint names no network: the teacher.pt does (torchvision:resnet18 here), and its training settings
    are teacher.train's, as for every other teacher."""
    from datafree.teachers import ClassifierInfo, save_classifier

    torch.manual_seed(0)
    info = ClassifierInfo("torchvision:resnet18", 3, (3, 8, 8), (0.5,) * 3, (0.25,) * 3)
    save_classifier(tmp_path / "teacher.pt", torchvision.models.resnet18(num_classes=3), info)
    teacher = [a for a in TINY if a.split("=")[0].split(".")[0] in ("data", "device", "progress")]
    proc = in_process(capsys, "train-teacher", *teacher, "teacher=checkpoint", f"teacher.checkpoint={tmp_path / 'teacher.pt'}",
                      "teacher.train.epochs=1", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "teacher torchvision:resnet18: test accuracy" in proc.stdout
    assert "its classifier (fc.weight, fc.bias) is for 3 classes; it starts fresh for 10" in _log(tmp_path / "run", "train-teacher")
    trained = torch.load(tmp_path / "run" / "teacher.pt", weights_only=True)
    assert trained["arch"] == "torchvision:resnet18" and trained["num_classes"] == 10


def test_train_teacher_starts_from_the_weights_of_the_network_a_datafree_checkpoint_names(tmp_path):
    from omegaconf import OmegaConf

    from datafree.jobs import teacher_network
    from datafree.models import create_model
    from datafree.teachers import ClassifierInfo, save_classifier

    torch.manual_seed(0)
    start = create_model("microcnn", num_classes=10)
    save_classifier(tmp_path / "t.pt", start, ClassifierInfo("microcnn", 10, (3, 8, 8), (0.5,) * 3, (0.25,) * 3))
    cfg = OmegaConf.create({"teacher": {"source": "datafree", "arch": None, "checkpoint": str(tmp_path / "t.pt")}})
    net, label = teacher_network(cfg, num_classes=10, in_channels=3)
    assert label == "microcnn"
    assert all(torch.equal(v, start.state_dict()[k]) for k, v in net.state_dict().items())


@pytest.mark.parametrize("saved", ["state dict", "own class"])
def test_train_teacher_on_a_checkpoint_that_names_no_buildable_network_says_which_teacher_to_choose(tmp_path, capsys,
                                                                                                    saved):
    from datafree.teachers import ClassifierInfo, save_classifier

    weights = tmp_path / "t.pt"
    if saved == "state dict":
        torch.save(TinyBNNet(10).state_dict(), weights)
        needles = [f"teacher.arch is null, so the network to fine-tune is the one teacher.checkpoint names, and "
                   f"'{weights}' is not a datafree checkpoint (which names it); no zoo, torchvision or timm network "
                   "fits them: fine-tune them with teacher=module "
                   f"teacher.model._target_=my_pkg.MyNet teacher.checkpoint={weights} for your own class"]
    else:
        save_classifier(weights, TinyBNNet(10), ClassifierInfo("nets.TinyBNNet", 10, (3, 8, 8), (0.5,) * 3, (0.25,) * 3))
        needles = [f"'{weights}' holds a nets.TinyBNNet network, which only its own class can build: fine-tune it with "
                   f"teacher=module teacher.model._target_=nets.TinyBNNet teacher.checkpoint={weights}."]
    out = tmp_path / "run"
    teacher = [a for a in TINY if a.split("=")[0].split(".")[0] in ("data", "device", "progress")]
    proc = in_process(capsys, "train-teacher", *teacher, "teacher=checkpoint", f"teacher.checkpoint={weights}",
                      f"hydra.run.dir={out}")
    _assert_clean_failure(proc, out, *needles)
    assert proc.stderr.count("\n") == 1


@pytest.mark.parametrize("args, needles", [
    (["student=torchvision", "student.name=mobilenet_v3_smal"], ["torchvision has no classification model "
                                                                "'mobilenet_v3_smal'", "mobilenet_v3_small"]),
    (["student=timm", "student.name=efficientnet_b9000"], ["timm has no model 'efficientnet_b9000'", "student.name"]),
    (["student=torchvision"], ["student.name"]),
])
def test_bad_students_are_refused_before_any_work(tmp_path, capsys, args, needles):
    out = tmp_path / "run"
    proc = in_process(capsys, "distill", *BASE, *args, f"hydra.run.dir={out}")
    _assert_clean_failure(proc, out, *needles)


def test_a_missing_timm_is_one_line_naming_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm now raises ImportError
    out = tmp_path / "run"
    proc = in_process(capsys, "distill", *BASE, "student=timm", "student.name=test_resnet", f"hydra.run.dir={out}")
    _assert_clean_failure(proc, out, "needs timm, which is not installed: pip install timm")


def test_a_student_checkpoint_that_does_not_fit_names_the_keys_and_the_fix(tmp_path, capsys):
    torch.save(TinyBNNet(10).state_dict(), tmp_path / "other.pt")
    out = tmp_path / "run"
    proc = in_process(capsys, "distill", *BASE, *MOBILENET, f"student.checkpoint={tmp_path / 'other.pt'}",
                      f"hydra.run.dir={out}")
    _assert_clean_failure(proc, out, "student.checkpoint", "does not match the student torchvision:mobilenet_v3_small",
                          "missing keys", "This run builds the student torchvision:mobilenet_v3_small: set the student to "
                          "the network the weights were saved from, or leave student.checkpoint out")


@pytest.mark.parametrize("command", ["distill", "train-teacher"])
def test_a_datafree_checkpoint_of_another_network_is_told_with_the_overrides_that_build_it(tmp_path, capsys, command):
    """The label in the message is the network this run builds, said as such; the file's own network (a datafree
    checkpoint names it) comes with the overrides that build it."""
    from datafree.teachers import ClassifierInfo, save_classifier

    info = ClassifierInfo("torchvision:resnet18", 10, (3, 8, 8), (0.5,) * 3, (0.25,) * 3)
    save_classifier(tmp_path / "r18.pt", torchvision.models.resnet18(num_classes=10), info)
    out, weights = tmp_path / "run", tmp_path / "r18.pt"
    if command == "distill":
        proc = in_process(capsys, "distill", *BASE, *MOBILENET, f"student.checkpoint={weights}", f"hydra.run.dir={out}")
        what, restart = "student", "leave student.checkpoint out to start from random weights"
    else:
        teacher = [a for a in TINY if a.split("=")[0].split(".")[0] in ("data", "device", "progress")]
        proc = in_process(capsys, "train-teacher", *teacher, "teacher=torchvision", "teacher.name=mobilenet_v3_small",
                          f"teacher.checkpoint={weights}", f"hydra.run.dir={out}")
        what, restart = "teacher", "set teacher.checkpoint=null to train from scratch"
    _assert_clean_failure(proc, out, f"does not match the {what} torchvision:mobilenet_v3_small",
                          f"This run builds the {what} torchvision:mobilenet_v3_small, and the file is a datafree "
                          f"checkpoint of torchvision:resnet18: {what}=torchvision {what}.name=resnet18 builds that, "
                          f"or {restart}.")
    assert "here)" not in proc.stderr


def test_a_student_checkpoint_that_cannot_be_read_is_named_as_the_students(tmp_path):
    """Not as teacher.checkpoint, and without the teacher's options (trust_checkpoint, source=torchscript)."""
    from datafree.errors import DatafreeError
    from datafree.teachers.students import start_weights

    net = torchvision.models.mobilenet_v3_small(num_classes=10)
    torch.save(net, tmp_path / "whole.pt")  # a pickled module
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated; users still hand its files over
        torch.jit.save(torch.jit.trace(net.eval(), torch.rand(1, 3, 32, 32)), str(tmp_path / "traced.pt"))
    for name, needle in (("gone.pth", r"student.checkpoint '.*gone.pth' does not exist: point student.checkpoint at"),
                         ("whole.pt", r"student.checkpoint '.*whole.pt' holds pickled .* save model.state_dict\(\) instead\.$"),
                         ("traced.pt", r"student.checkpoint '.*traced.pt' is a TorchScript archive, not a checkpoint: give "
                                       r"the network's weights")):
        with pytest.raises(DatafreeError, match=needle):
            start_weights(net, "torchvision:mobilenet_v3_small", {"checkpoint": str(tmp_path / name)})


def test_a_timm_teacher_distils_into_a_zoo_student(tmp_path, capsys):
    import timm

    torch.manual_seed(0)
    torch.save(timm.create_model("test_resnet", num_classes=10).state_dict(), tmp_path / "teacher.pth")
    args = [a for a in BASE if not a.startswith("teacher")] + [
        "teacher=timm", "teacher.name=test_resnet", f"teacher.checkpoint={tmp_path / 'teacher.pth'}", "student=microcnn"]
    proc = in_process(capsys, "distill", *args, f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "teacher timm:test_resnet: test accuracy" in proc.stdout and "student microcnn: test accuracy" in proc.stdout
    log = _log(tmp_path / "run")
    assert "inferred 10 classes from the classifier weights" in log and "using the data set's 8x8 images" in log


@pytest.mark.parametrize("args, named", [
    ([], False), (["student=resnet18"], True), (["student=torchvision", "student.name=resnet18"], True),
    (["student.arch=resnet18"], False),  # a key of the default student still leaves it the default
])
def test_experiment_fast_asks_for_a_named_student(tmp_path, capsys, args, named):
    """The recipe for any pair does not distil a ResNet-50 into the demo's microcnn unasked."""
    from datafree import cli

    overrides = ["experiment=fast", "teacher.checkpoint=teacher.pt", *args]
    assert (cli._unnamed_student("distill", cli._compose("distill", overrides)) is None) == named
    if not named:
        out = tmp_path / "run"
        proc = in_process(capsys, "distill", *overrides, "device=cpu", f"hydra.run.dir={out}")
        _assert_clean_failure(proc, out, "experiment=fast distils into the student you name: add student=resnet18")


def test_train_teachers_rate_follows_the_global_batch(tmp_path, capsys, monkeypatch):
    from datafree import jobs
    from datafree.utils.logging import RunLogger

    teacher = [a for a in TINY if a.split("=")[0].split(".")[0] in ("device", "progress")
               or (a.startswith("data.") and not a.startswith("data.batch_size"))]
    proc = in_process(capsys, "train-teacher", *teacher, "data.batch_size=32", "teacher=resnet18", "teacher.train.epochs=1",
                      f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "teacher.train.lr=auto: 0.0125 for a global batch of 32 images (0.2 per 512" in _log(tmp_path / "run", "train-teacher")
    # Under torchrun the global batch is every process's share: 4 x 32 images take 0.05; a number is taken as it is.
    logger = RunLogger(tmp_path / "api", tensorboard=False)
    monkeypatch.setattr(jobs.dist, "world_size", lambda: 4)
    assert jobs.teacher_lr("auto", 32, logger) == pytest.approx(0.05)
    assert jobs.teacher_lr(0.3, 32, logger) == 0.3
    proc = in_process(capsys, "train-teacher", *teacher, "teacher.train.lr=fast", f"hydra.run.dir={tmp_path / 'bad'}")
    assert proc.returncode == 2 and "teacher.train.lr must be auto or a number > 0, got 'fast'" in proc.stderr


# -- networks built for one input size, and networks that answer differently in training mode -----------------------
AT_16 = ["data.image_size=16"]  # a ViT's 16-px patches need at least 16 px


@pytest.mark.parametrize("student, label", [
    (["student=torchvision", "student.name=vit_b_16"], "torchvision:vit_b_16"),  # built for 224 px by default
    (["student=timm", "student.name=test_vit"], "timm:test_vit"),  # timm's configuration: fixed at 160 px
])
def test_a_student_built_for_one_size_is_built_for_the_teachers(tmp_path, capsys, student, label):
    proc = _run(capsys, tmp_path / "run", *AT_16, *student, "trainer.rounds=1")
    assert f"student {label}: test accuracy" in proc.stdout
    back = load_teacher("datafree", checkpoint=str(tmp_path / "run" / "student.pt"))  # rebuilt at 16 px from its label
    assert back.info.arch == label and back.info.input_size == (3, 16, 16)


def test_a_vit_student_starts_from_weights_saved_at_the_teachers_size(tmp_path, capsys):
    import timm

    torch.manual_seed(0)
    start = timm.create_model("test_vit", num_classes=1000, img_size=16)  # position embeddings for 16 px
    torch.save(start.state_dict(), tmp_path / "vit16.pth")
    proc = _run(capsys, tmp_path / "run", *AT_16, "student=timm", "student.name=test_vit", "trainer.rounds=1",
                "trainer.student_steps=0", f"student.checkpoint={tmp_path / 'vit16.pth'}")
    assert "student timm:test_vit: test accuracy" in proc.stdout and "starts fresh for 10" in _log(tmp_path / "run")
    saved = torch.load(tmp_path / "run" / "student.pt", weights_only=True)["state_dict"]
    assert torch.equal(saved["pos_embed"], start.state_dict()["pos_embed"])


def test_a_vit_student_starts_from_weights_saved_at_another_size(tmp_path, capsys):
    """Weights at timm's own size (ImageNet's 224 px for a real ViT; 160 for test_vit) start a student at the
    teacher's 16 px: the position embeddings are resampled as timm's own loader does, and the log says so."""
    import timm

    torch.manual_seed(0)
    start = timm.create_model("test_vit", num_classes=1000)  # built for 160 px
    torch.save(start.state_dict(), tmp_path / "vit160.pth")
    proc = _run(capsys, tmp_path / "run", *AT_16, "student=timm", "student.name=test_vit", "trainer.rounds=1",
                "trainer.student_steps=0", f"student.checkpoint={tmp_path / 'vit160.pth'}")
    assert "student timm:test_vit: test accuracy" in proc.stdout
    assert "pos_embed resized to this network's input size by timm's checkpoint filter" in _log(tmp_path / "run")
    saved = torch.load(tmp_path / "run" / "student.pt", weights_only=True)["state_dict"]
    assert saved["pos_embed"].shape == (1, 2, 64) and torch.equal(saved["cls_token"], start.state_dict()["cls_token"])


def test_a_torchvision_vit_starts_from_weights_saved_at_another_size(tmp_path, caplog):
    """torchvision's ViT weights at 32 px (ImageNet's are at 224) start a ViT built for 16 px: the position embeddings
    are resampled by torchvision's own interpolate_embeddings (class token kept), and the log says so. A small ViT of
    torchvision's class: vit_b_16 itself is 86M parameters."""
    from torchvision.models.vision_transformer import VisionTransformer

    from datafree.teachers.students import start_weights

    def vit(size, classes):
        return VisionTransformer(image_size=size, patch_size=8, num_layers=1, num_heads=2, hidden_dim=8, mlp_dim=16,
                                 num_classes=classes)

    torch.manual_seed(0)
    saved = vit(32, 1000)  # 4 x 4 patches
    torch.save(saved.state_dict(), tmp_path / "vit32.pth")
    net = vit(16, 10)  # 2 x 2 patches
    with caplog.at_level("INFO", logger="datafree"):
        notes = start_weights(net, "torchvision:vit_tiny", {"checkpoint": str(tmp_path / "vit32.pth")})
    assert any("encoder.pos_embedding resized to this network's input size by torchvision's interpolate_embeddings"
               in n for n in notes), notes
    pos = net.state_dict()["encoder.pos_embedding"]
    assert pos.shape == (1, 5, 8) and torch.equal(pos[:, 0], saved.state_dict()["encoder.pos_embedding"][:, 0])
    assert torch.equal(net.conv_proj.weight, saved.conv_proj.weight)


def test_googlenet_trains_and_distils_on_its_main_classifier(tmp_path, capsys):
    """torchvision's GoogLeNet answers with its auxiliary classifiers too in training mode unless built without them."""
    teacher = [a for a in TINY if a.split("=")[0].split(".")[0] in ("data", "device", "progress")
               and not a.startswith("data.image_size")]
    googlenet = ["teacher=torchvision", "teacher.name=googlenet"]
    proc = in_process(capsys, "train-teacher", *teacher, *AT_16, *googlenet, "teacher.train.epochs=1",
                      f"hydra.run.dir={tmp_path / 'teacher'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "teacher torchvision:googlenet: test accuracy" in proc.stdout
    proc = _run(capsys, tmp_path / "run", *AT_16, "student=torchvision", "student.name=googlenet", "trainer.rounds=1")
    assert "student torchvision:googlenet: test accuracy" in proc.stdout


def test_a_checkpoint_with_auxiliary_classifiers_loads_without_them(tmp_path, caplog):
    """Weights saved from torchvision's GoogLeNet as built for training (aux1, aux2) serve the main classifier."""
    torch.manual_seed(0)
    full = torchvision.models.googlenet(num_classes=10, aux_logits=True, init_weights=True)
    torch.save(full.state_dict(), tmp_path / "googlenet.pth")
    with caplog.at_level("INFO", logger="datafree"):
        teacher = load_teacher("torchvision", name="googlenet", checkpoint=str(tmp_path / "googlenet.pth"),
                               input_size=[3, 32, 32])
    assert "auxiliary classifiers (aux1.*, aux2.*" in caplog.text and "are left out" in caplog.text
    net = teacher.model.model
    assert net.aux1 is None and torch.equal(net.fc.weight, full.fc.weight)


def test_a_network_answering_otherwise_in_training_mode_is_refused_before_any_work(tmp_path, capsys):
    torch.manual_seed(0)
    torch.save(TinyBNNet(10).state_dict(), tmp_path / "teacher.pt")
    teacher = ["teacher=module", "teacher.model._target_=nets.TinyBNNet", "+teacher.model.num_classes=10",
               f"teacher.checkpoint={tmp_path / 'teacher.pt'}"]
    module = ["student=module", "student.model._target_=nets.TrainingPairNet", "+student.model.num_classes=10"]
    out = tmp_path / "run"
    proc = in_process(capsys, "distill", *[a for a in BASE if not a.startswith("teacher")], *teacher, *module,
                      f"hydra.run.dir={out}")
    _assert_clean_failure(proc, out, "the student returns a tuple in training mode, not a tensor of logits",
                          "output[0]")
    # The same student with no teacher yet (teacher.train_if_missing): refused before the teacher's training.
    out = tmp_path / "trains_first"
    proc = in_process(capsys, "distill", *BASE, *module, f"hydra.run.dir={out}")
    _assert_clean_failure(proc, out, "the student returns a tuple in training mode")
    assert "training one first" not in proc.stderr + proc.stdout
    data = [a for a in TINY if a.split("=")[0].split(".")[0] in ("data", "device", "progress")]
    out = tmp_path / "teacher"
    proc = in_process(capsys, "train-teacher", *data, "teacher=module", "teacher.model._target_=nets.TrainingPairNet",
                      "+teacher.model.num_classes=10", f"hydra.run.dir={out}")
    _assert_clean_failure(proc, out, "the teacher returns a tuple in training mode")


@pytest.mark.parametrize("command", ["distill", "train-teacher"])
def test_a_network_datafree_trains_that_ends_in_a_softmax_is_refused_before_any_work(tmp_path, capsys, command):
    """It would learn through probabilities taken for logits; as a frozen teacher it is welcome (test_sources.py)."""
    out = tmp_path / "run"
    network = "student" if command == "distill" else "teacher"
    args = ([*BASE, "student=module", "student.model._target_=nets.SoftmaxNet", "+student.model.num_classes=10"]
            if command == "distill" else
            [*[a for a in TINY if a.split("=")[0].split(".")[0] in ("data", "device", "progress")], "teacher=module",
             "teacher.model._target_=nets.SoftmaxNet", "+teacher.model.num_classes=10"])
    proc = in_process(capsys, command, *args, f"hydra.run.dir={out}")
    _assert_clean_failure(proc, out, f"the {network} returns probabilities in training mode (each row sums to 1: it ends "
                                     "in a softmax)", "remove the final softmax")


def test_a_training_set_smaller_than_one_batch_is_refused_naming_the_batch_that_fits(tmp_path, capsys):
    data = [a for a in TINY if a.split("=")[0].split(".")[0] in ("data", "device", "progress")]
    out = tmp_path / "teacher"
    proc = in_process(capsys, "train-teacher", *data, "data.batch_size=512", "teacher=tinycnn_shapes",
                      "teacher.arch=microcnn", f"hydra.run.dir={out}")
    _assert_clean_failure(proc, out, "data.batch_size=512 is more than the 400 training images give: set "
                                     "data.batch_size=256 or lower")


def test_a_trained_network_with_another_class_count_is_refused_before_training(tmp_path, capsys):
    teacher = [a for a in TINY if a.split("=")[0].split(".")[0] in ("data", "device", "progress")]
    out = tmp_path / "teacher"
    proc = in_process(capsys, "train-teacher", *teacher, "teacher=module", "teacher.model._target_=nets.TinyBNNet",
                      "+teacher.model.num_classes=4", f"hydra.run.dir={out}")
    _assert_clean_failure(proc, out, "the teacher returns 4 logits per image but the data has 10 classes")


def test_networks_that_return_their_logits_in_an_output_object_train_and_distil(tmp_path, capsys):
    """Hugging Face transformers classifiers return an output object holding ``logits`` in both modes
    (nets.LikeTransformers stands in for one): train-teacher trains one, distill takes it as teacher and another
    as student, each read through the field, and the student's weights are the network's own."""
    def like(who):
        return [f"{who}=module", f"{who}.model._target_=nets.LikeTransformers",
                f"+{who}.model.num_classes=10"]

    data = [a for a in TINY if a.split("=")[0].split(".")[0] in ("data", "device", "progress")]
    out = tmp_path / "teacher"
    proc = in_process(capsys, "train-teacher", *data, *like("teacher"), f"hydra.run.dir={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "the teacher returns a ClassifierOutput: its 'logits' are read as the teacher's logits" in _log(out, "train-teacher")
    run = tmp_path / "run"
    rest = [a for a in BASE if not a.startswith(("teacher", "student"))]
    proc = in_process(capsys, "distill", *rest, *like("teacher"), f"teacher.checkpoint={out / 'teacher.pt'}",
                      *like("student"), f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = _log(run)
    assert "the teacher returns a ClassifierOutput" in log and "the student returns a ClassifierOutput" in log
    assert "student nets.LikeTransformers: test accuracy" in proc.stdout
    saved = torch.load(run / "student.pt", weights_only=True)["state_dict"]
    assert set(saved) == set(TinyBNNet(10).state_dict())


def test_a_students_constructor_that_the_meta_device_refuses_is_built_on_the_cpu_for_the_checks(tmp_path, capsys):
    """The checks before any work build the student on the meta device (names and shapes, no memory); a class of
    the user's that reads a tensor back in its constructor is built on the CPU there instead."""
    proc = _run(capsys, tmp_path / "run", "student=module", "student.model._target_=nets.ReadsBackATensor",
                "+student.model.num_classes=10")
    assert "student nets.ReadsBackATensor: test accuracy" in proc.stdout


def test_the_transformers_recipes_without_transformers_say_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # what an import finds where it is not installed
    out = tmp_path / "run"
    rest = [a for a in BASE if not a.startswith(("teacher", "student"))]
    for who in ("teacher", "student"):
        other = "student=microcnn" if who == "teacher" else "teacher=tinycnn_shapes"
        proc = in_process(capsys, "distill", *rest, f"{who}=transformers", f"{who}.name={tmp_path}", other,
                          f"hydra.run.dir={out}")
        _assert_clean_failure(proc, out, f"{who}.model._target_='transformers.AutoModelForImageClassification"
                                         ".from_pretrained' needs transformers, which is not installed: pip install "
                                         "transformers.")


def test_the_transformers_recipes_distil_a_folder_save_pretrained_wrote(tmp_path, capsys):
    """teacher=transformers and student=transformers with transformers itself, where it is installed (it is not one
    of datafree's requirements): its classes and preprocessing come from the folders."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    for name, labels in (("teacher", 10), ("student", 10)):
        config = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic",
                                           num_labels=labels, id2label={k: f"shape{k}" for k in range(labels)})
        transformers.ResNetForImageClassification(config).save_pretrained(tmp_path / name)
    (tmp_path / "teacher" / "preprocessor_config.json").write_text(
        '{"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25], "size": {"height": 8, "width": 8}}')
    rest = [a for a in BASE if not a.startswith(("teacher", "student"))]
    proc = in_process(capsys, "distill", *rest, "teacher=transformers", f"teacher.name={tmp_path / 'teacher'}",
                      "student=transformers", f"student.name={tmp_path / 'student'}", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = _log(tmp_path / "run")
    assert "using its preprocessor_config.json's mean [0.5, 0.5, 0.5] and std [0.25, 0.25, 0.25]" in log
    assert "the teacher returns a ImageClassifierOutputWithNoAttention: its 'logits' are read" in log
    assert "the student returns a ImageClassifierOutputWithNoAttention: its 'logits' are read" in log
    assert "student transformers.AutoModelForImageClassification.from_pretrained: test accuracy" in proc.stdout


@pytest.mark.parametrize("source, example", [("torchvision", "mobilenet_v3_large"), ("timm", "efficientnet_b0"),
                                             ("transformers", "DIR")])
def test_a_student_without_its_name_is_shown_one_of_its_source(tmp_path, capsys, source, example):
    out = tmp_path / "run"
    proc = in_process(capsys, "distill", *BASE, f"student={source}", f"hydra.run.dir={out}")
    _assert_clean_failure(proc, out, f"student.name must be set (the recipe leaves it as ???): e.g. student.name={example}.")
