"""Bad input never costs a run: one line, exit status 2, nothing written, keys named that exist.

Run in this process (datafree.cli.main) to keep the suite fast; the CLI is the same code either way.
"""
import hashlib
from pathlib import Path

import pytest
import torch

from datafree.models import create_model
from datafree.teachers import save_classifier
from recipe_keys import missing_keys
from test_cli import TINY, _info, run_in_process


def assert_refused(result, out: Path, command: str, overrides, *needles):
    code, _, err = result
    assert code == 2, err[-3000:]
    assert err.count("\n") == 1 and err.startswith("datafree: error: "), err
    assert "Traceback" not in err and "HYDRA_FULL_ERROR" not in err
    for needle in needles:
        assert needle in err, err
    assert not out.exists(), f"left behind: {sorted(out.rglob('*'))}"
    assert not missing_keys(err, command, overrides), err


# -- values a constructor refuses while the recipe is built ----------------------------------------------
@pytest.mark.parametrize("overrides, needles", [
    (["trainer.loss.temperature=-1"], ["temperature must be > 0", "trainer.loss.temperature"]),
    (["+trainer.loss.temprature=2"], ["trainer.loss (datafree.distill.losses.KDLoss) refused its settings: TypeError",
                                      "temprature"]),
    (["synthesizer.augment=[{_target_: kornia.augmentation.ColorJitter, brightness: -1}]"],
     ["synthesizer.augment[0] (kornia.augmentation", "ValueError", "brightness"]),
    (["synthesizer.jitter=-1"], ["must be >= 0, got jitter=-1"]),
    (["data.test.seed=abc"], ["data.test (datafree.data.build_dataset) refused its settings: ValueError"]),
    (["trainer.pool_capacity=-1"], ["trainer.pool_capacity must be auto or an int >= 0", "trainer.pool_capacity=auto"]),
    (["trainer.ema_bn_batches=-1"], ["trainer.ema_bn_batches must be an int >= 0", "trainer.ema_bn_batches=50"]),
])
def test_constructor_refusals_are_one_line(tmp_path, capsys, overrides, needles):
    out = tmp_path / "run"
    args = [*TINY, *overrides]
    assert_refused(run_in_process(capsys, "distill", *args, f"hydra.run.dir={out}"), out, "distill", args, *needles)


# -- paths, data locations and normalisation ------------------------------------------------------------
def test_folder_given_for_a_checkpoint(tmp_path, capsys):
    folder = tmp_path / "weights"
    folder.mkdir()
    save_classifier(folder / "teacher.pt", create_model("microcnn", num_classes=10), _info())
    out, args = tmp_path / "run", [*TINY, f"teacher.checkpoint={folder}"]
    assert_refused(run_in_process(capsys, "distill", *args, f"hydra.run.dir={out}"), out, "distill", args,
                   "is a folder, not a file (it holds teacher.pt)", "point teacher.checkpoint at the weights file")


class MyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body, self.head = torch.nn.Conv2d(3, 4, 3), torch.nn.Linear(4, 10)


@pytest.mark.parametrize("weights, arch, fix", [
    ("zoo", "microcnn", "The weights are a tinycnn with 10 classes: set teacher.arch=tinycnn teacher.num_classes=10."),
    # a datafree checkpoint names its network: teacher=checkpoint builds it, with the file's input size and normalisation
    ("datafree", "microcnn", "This run builds the teacher microcnn, and the file is a datafree checkpoint of tinycnn: "
                             "teacher=checkpoint teacher.checkpoint=CKPT builds that (it reads the network from the file: "
                             "leave teacher.arch out)."),
    # torchvision weights given to the zoo network of their family
    ("torchvision", "resnet34", "The weights are torchvision's resnet18 with 10 classes: load them with "
                                "teacher=torchvision teacher.name=resnet18 teacher.checkpoint=CKPT."),
    # timm weights given to a zoo network of their family (timm's MobileNetV2 keys are not torchvision's)
    ("timm", "mobilenetv2", "The weights are timm's mobilenetv2_100 with 10 classes: load them with "
                            "teacher=timm teacher.name=mobilenetv2_100 teacher.checkpoint=CKPT."),
    ("own", "microcnn", "The weights fit no zoo network: if a torchvision or timm model saved them, load them with "
                        "teacher=torchvision teacher.name=NAME (or teacher=timm) teacher.checkpoint=CKPT; else into your "
                        "own class with teacher=module teacher.model._target_=my_pkg.MyNet teacher.checkpoint=CKPT "
                        "(docs/custom_teacher.md)."),
])
def test_mismatched_checkpoint_names_the_network_the_weights_fit(tmp_path, capsys, weights, arch, fix):
    ckpt = tmp_path / "t.pt"
    if weights == "datafree":
        save_classifier(ckpt, create_model("tinycnn", num_classes=10), _info("tinycnn"))
    else:
        import torchvision

        net = {"zoo": lambda: create_model("tinycnn", num_classes=10), "own": MyNet,
               "torchvision": lambda: torchvision.models.resnet18(num_classes=10),
               "timm": lambda: pytest.importorskip("timm").create_model("mobilenetv2_100", num_classes=10)}[weights]()
        torch.save(net.state_dict(), ckpt)
    out, args = tmp_path / "run", [*TINY, f"teacher.checkpoint={ckpt}", f"teacher.arch={arch}", "teacher.num_classes=10"]
    proc = run_in_process(capsys, "distill", *args, f"hydra.run.dir={out}")
    assert_refused(proc, out, "distill", args, f"does not match architecture '{arch}'", fix.replace("CKPT", str(ckpt)))


@pytest.mark.parametrize("command, verb", [("distill", "load"), ("train-teacher", "fine-tune")])
def test_a_bare_state_dict_is_told_the_network_it_fits(tmp_path, capsys, command, verb):
    # weights alone (torch.save(model.state_dict())) do not say which network they are: the one they fit is searched
    # for and named with the overrides that build it, rather than asking for a zoo name
    import torchvision

    ckpt = tmp_path / "weights.pth"
    torch.save(torchvision.models.mobilenet_v3_small(num_classes=10).state_dict(), ckpt)
    tiny = [a for a in TINY if not a.startswith(("teacher", *(() if command == "distill" else ("synthesizer", "trainer",
                                                                                               "student"))))]
    args = [*tiny, "teacher=checkpoint", f"teacher.checkpoint={ckpt}"]
    out = tmp_path / "run"
    assert_refused(run_in_process(capsys, command, *args, f"hydra.run.dir={out}"), out, command, args,
                   f"they fit torchvision's mobilenet_v3_small with 10 classes: {verb} them with teacher=torchvision "
                   f"teacher.name=mobilenet_v3_small teacher.checkpoint={ckpt}.")


@pytest.mark.parametrize("command, overrides, needle", [
    ("distill", ["resume=NOWHERE"], "resume=NOWHERE but NOWHERE does not exist: point resume at the run directory"),
    ("audit", ["synthetic="], "synthetic must be a path (not empty), got ''"),  # synthetic=$UNSET in a shell
    ("audit", ["synthetic=null"], "no synthetic data set given: set synthetic=DIR"),  # optional in deploy, report
    ("audit", ["synthetic=NOWHERE"], "NOWHERE does not exist: point synthetic at the folder that datafree synthesize wrote"),
])
def test_a_missing_path_is_said_to_be_missing(tmp_path, capsys, command, overrides, needle):
    # (from_run: tests/export/test_cli_synthesize.py)
    nowhere = str(tmp_path / "nowhere")
    args = [*(TINY if command == "distill" else ["device=cpu"]), *(o.replace("NOWHERE", nowhere) for o in overrides)]
    out = tmp_path / "nowhere" if command == "distill" else tmp_path / "run"  # resume=DIR is the run directory
    result = run_in_process(capsys, command, *args, *([] if command == "distill" else [f"hydra.run.dir={out}"]))
    assert_refused(result, out, command, args, needle.replace("NOWHERE", nowhere))


@pytest.mark.parametrize("data, needles", [
    (["data=imagefolder", "data.root=FILE", "data.num_classes=3"], ["is a file, not a folder"]),
    (["data=imagefolder", "data.root=EMPTY", "data.num_classes=3"], ["holds no test", "data.root"]),
    (["data=imagefolder", "data.root=EMPTY/nowhere", "data.num_classes=3"], ["nowhere does not exist: set data.root", "data.root"]),
    # data.root=$UNSET in a shell: not the working directory
    (["data=imagefolder", "data.root=", "data.num_classes=3"], ["data.root must be null or a path (not empty), got ''"]),
    (["data=cifar10_jpeg"], ["needs a location: set data.root to the folder holding train.tar.gz and test.tar.gz"]),
    (["data=cifar10_jpeg", "data.root=EMPTY/nowhere"], ["does not exist", "data.root"]),
    (["data=cifar10", "data.root=EMPTY"], ["not under", "data.download=true", "data.root"]),
])
def test_data_locations_name_keys_of_the_recipe(tmp_path, capsys, monkeypatch, data, needles):
    monkeypatch.delenv("DATAFREE_CIFAR10_JPEG", raising=False)
    (tmp_path / "FILE").write_text("x")
    (tmp_path / "EMPTY").mkdir()
    data = [d.replace("FILE", str(tmp_path / "FILE")).replace("EMPTY", str(tmp_path / "EMPTY")) for d in data]
    out = tmp_path / "run"
    args = [a for a in TINY if not a.startswith("data.")] + data
    assert_refused(run_in_process(capsys, "distill", *args, f"hydra.run.dir={out}"), out, "distill", args, *needles)


def test_readme_step_one_without_cifar_says_how_to_get_it(tmp_path, capsys, monkeypatch):
    # 'datafree train-teacher experiment=cifar10_resnet34_resnet18' on a machine without CIFAR-10 and offline.
    monkeypatch.setenv("DATAFREE_DATA", str(tmp_path / "cache"))
    out, args = tmp_path / "run", ["experiment=cifar10_resnet34_resnet18", "device=cpu"]
    assert_refused(run_in_process(capsys, "train-teacher", *args, f"hydra.run.dir={out}"), out, "train-teacher", args,
                   "cifar10 (train) is not under", "add data.download=true")


def test_normalisation_of_the_wrong_length_is_blamed(tmp_path, capsys):
    teacher = save_classifier(tmp_path / "t.pt", create_model("microcnn", num_classes=10), _info())
    out, args = tmp_path / "run", [*TINY, f"teacher.checkpoint={teacher}", "teacher.mean=[0.5]", "teacher.std=[0.25]"]
    assert_refused(run_in_process(capsys, "distill", *args, f"hydra.run.dir={out}"), out, "distill", args,
                   "the normalisation has 1 mean and 1 std value(s) (teacher.mean / teacher.std) but the teacher takes "
                   "3-channel inputs", "teacher.mean=[0.5,0.5,0.5]")
    args = [a for a in TINY if a.split(".")[0] in ("data", "teacher", "device", "progress")] + [
        "data.mean=[0.5]", "data.std=[0.25]"]
    assert_refused(run_in_process(capsys, "train-teacher", *args, f"hydra.run.dir={out}"), out, "train-teacher", args,
                   "data.mean / data.std have 1 / 1 value(s) but the training images have 3 channel(s)")


@pytest.mark.parametrize("override", ["data.root=/my data (copy)", "data.root=/données", "data.root=~/data"])
def test_values_hydra_cannot_parse_are_to_be_quoted(tmp_path, capsys, override):
    code, _, err = run_in_process(capsys, "distill", override, f"hydra.run.dir={tmp_path / 'run'}")
    key, value = override.split("=", 1)
    assert code == 2 and err.count("\n") == 1 and "must be quoted" in err and "Exception" not in err, err
    assert f"write {key}='{value}' (in a shell: \"{key}='{value}'\")" in err


# -- a run folder that exists is never changed by a refusal ----------------------------------------------
def _contents(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_refusals_leave_a_run_as_it_was(tmp_path, capsys):
    run = tmp_path / "run"
    args = [*TINY, "noise_baseline=false"]
    code, _, err = run_in_process(capsys, "distill", *args, f"hydra.run.dir={run}")
    assert code == 0, err[-3000:]
    before = _contents(run)
    assert "teacher/state_last.pt" in before and "state_last.pt" in before

    refusals = [
        # changed settings, caught before hydra writes its record
        ([*args, f"resume={run}", "trainer.lr=0.2"], "differs from the checkpoint's in trainer.lr: 0.05 -> 0.2"),
        # a new run in the folder of an old one
        ([*args, f"hydra.run.dir={run}"], "already holds the saved state"),
        # a run-length change that the job itself refuses, after hydra wrote its record
        ([*args, f"resume={run}", "trainer.rounds=0"], "trainer.rounds must be an int >= 1"),
    ]
    for overrides, needle in refusals:
        code, _, err = run_in_process(capsys, "distill", *overrides)
        assert code == 2 and needle in err and err.count("\n") == 1, err
        assert _contents(run) == before, overrides

    # Data loss: every state file damaged. Training afresh would overwrite teacher.pt and student.pt.
    for state in run.rglob("state_*.pt"):
        state.write_bytes(b"damaged" * 10)
    damaged = _contents(run)
    code, _, err = run_in_process(capsys, "distill", *args, f"resume={run}")
    # One short line: the files and the fix, not the archive reader's own words.
    assert code == 2 and err.count("\n") == 1 and len(err) < 300, err
    assert f"cannot resume from {run}: state_last.pt cannot be read (damaged), so nothing was changed: put back a good " \
           "copy" in err
    assert _contents(run) == damaged
    assert torch.load(run / "student.pt", weights_only=True)["arch"] == "microcnn"


def test_a_refused_run_keeps_a_folder_that_held_the_users_own_logs(tmp_path, capsys):
    # The folder existed before the run with a file of the user's that happens to end in .log: a refused run
    # removes only what it created itself (its hydra record and job log), never the folder with the user's file.
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.log").write_text("my own notes\n")
    code, _, err = run_in_process(capsys, "distill", *TINY, "trainer.loss.temperature=-1", f"hydra.run.dir={out}")
    assert code == 2, err[-2000:]
    assert (out / "notes.log").read_text() == "my own notes\n"


def test_a_refused_run_in_the_default_folder_leaves_nothing_behind(tmp_path, capsys, monkeypatch):
    # No hydra.run.dir: hydra makes outputs/distill/<time>/ under the working folder. A refusal removes the
    # folders it made, and only those: outputs/ of the user's, with a file in it, stays as it was.
    monkeypatch.chdir(tmp_path)
    code, _, err = run_in_process(capsys, "distill", *TINY, "trainer.rounds=-1")
    assert code == 2 and "trainer.rounds must be an int >= 1" in err, err
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "keep.txt").write_text("mine")
    code, _, err = run_in_process(capsys, "distill", *TINY, "trainer.rounds=-1")
    assert code == 2, err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["keep.txt", "outputs"]


@pytest.mark.parametrize("command", ["distill", "train-teacher"])
def test_keys_a_recipe_leaves_open_are_named_even_when_others_interpolate_them(tmp_path, capsys, command):
    """data=imagefolder leaves data.root as ??? (here data.num_classes too); data.train.root is ${data.root}, which
    OmegaConf's own search for ??? keys resolves, and fails on, with a traceback."""
    out = tmp_path / "run"
    overrides = ["data=imagefolder", "data.num_classes=???", "device=cpu", f"hydra.run.dir={out}"]
    assert_refused(run_in_process(capsys, command, *overrides), out, command, overrides,
                   "data.num_classes, data.root must be set (the recipe leaves them as ???): e.g. data.num_classes=10.")


@pytest.mark.parametrize("source, saved, named, key", [
    ("torchvision", "mobilenet_v3_large", "mobilenet_v3_small", "teacher"),
    ("torchvision", "resnet18", "resnet34", "student"),
    ("timm", "resnet18", "resnet34", "teacher"),
    ("timm", "efficientnet_b0", "efficientnet_b1", "student"),
])
def test_torchvision_or_timm_weights_of_a_sibling_are_named(tmp_path, capsys, source, saved, named, key):
    # weights saved from the family's other member (resnet18 for a resnet34): the network they fit is named, not only
    # the keys that differ
    if source == "timm":
        timm = pytest.importorskip("timm")
        net = timm.create_model(saved, num_classes=10, pretrained=False)
    else:
        import torchvision

        net = torchvision.models.get_model(saved, num_classes=10)
    ckpt = tmp_path / "w.pth"
    torch.save(net.state_dict(), ckpt)
    network = [f"{key}={source}", f"{key}.name={named}", f"{key}.checkpoint={ckpt}"]
    # a teacher of its own: the tiny recipe's teacher keys and its 8-px images go
    tiny = [a for a in TINY if key == "student" or not a.startswith(("teacher", "data.image_size"))]
    args = [*tiny, *network, *(["data.image_size=32"] if key == "teacher" else [])]
    out = tmp_path / "run"
    proc = run_in_process(capsys, "distill", *args, f"hydra.run.dir={out}")
    assert_refused(proc, out, "distill", args, f"This run builds the {key} {source}:{named}: the weights are "
                                               f"{source}'s {saved}: set {key}.name={saved}")
