"""Teachers and data that are not RGB, end to end through the CLI: grey (1 channel) and RGBA (4 channels).

The channel count follows the images (or data.channels) into the teacher, and the teacher's into the
student, the generator, the test images and the sample grid.
"""
import numpy as np
import torch
from PIL import Image

from datafree.data import make_shapes
from datafree.models import create_model
from datafree.teachers import ClassifierInfo, save_classifier
from nets import GroupNormNet
from recipe_keys import missing_keys
from test_cli import run_in_process

SMALL = ["data.image_size=8", "data.batch_size=32", "teacher=tinycnn_shapes", "teacher.arch=microcnn",
         "teacher.train.epochs=1", "student=microcnn", "trainer.rounds=2", "trainer.student_steps=2",
         "trainer.batch_size=16", "trainer.eval_every=1", "noise_baseline=false", "device=cpu", "progress=false"]
DEEPINVERSION = ["synthesizer.batch_size=16", "synthesizer.iterations=3"]
GENERATOR = ["synthesizer=dfad_demo", "trainer=adversarial_demo", "synthesizer.batch_size=16",
             "synthesizer.latent_dim=16"]


def _image_folder(root, mode: str, classes: int = 4):
    """train/ and test/ of PNGs in ``mode`` ('L' or 'RGBA', the alpha channel varying) from generated shapes."""
    for split, n, seed in (("train", 160, 1), ("test", 80, 2)):
        shapes = make_shapes(n, image_size=8, seed=seed, num_classes=classes)
        for i, (image, label) in enumerate(zip(shapes.images, shapes.labels)):
            rgb = image.permute(1, 2, 0).numpy()
            if mode == "L":
                picture = Image.fromarray(rgb).convert("L")
            else:
                alpha = np.full((8, 8, 1), 64 + 24 * (i % 8), np.uint8)
                picture = Image.fromarray(np.concatenate([rgb, alpha], axis=2), "RGBA")
            folder = root / split / shapes.classes[label]
            folder.mkdir(parents=True, exist_ok=True)
            picture.save(folder / f"{i}.png")
    return root


def _run_on_folder(tmp_path, capsys, mode, method):
    data = _image_folder(tmp_path / "images", mode)
    out = tmp_path / "run"
    code, stdout, err = run_in_process(capsys, "distill", "data=imagefolder", f"data.root={data}", "data.num_classes=4",
                                       *SMALL, *method, f"hydra.run.dir={out}")
    assert code == 0, err[-3000:]
    return out, stdout


def test_grey_image_folder_end_to_end(tmp_path, capsys):
    out, stdout = _run_on_folder(tmp_path, capsys, "L", DEEPINVERSION)
    for name in ("teacher.pt", "student.pt"):
        checkpoint = torch.load(out / name, weights_only=True)
        assert checkpoint["input_size"] == [1, 8, 8] and len(checkpoint["mean"]) == 1, name
    student = torch.load(out / "student.pt", weights_only=True)["state_dict"]
    assert student["features.0.weight"].shape[1] == 1  # the zoo student was built for grey images
    assert (out / "samples.png").is_file() and "student microcnn: test accuracy" in stdout


def test_rgba_image_folder_end_to_end_with_a_generator(tmp_path, capsys):
    out, _ = _run_on_folder(tmp_path, capsys, "RGBA", GENERATOR)
    student = torch.load(out / "student.pt", weights_only=True)
    assert student["input_size"] == [4, 8, 8] and student["state_dict"]["features.0.weight"].shape[1] == 4
    assert (out / "state_last.pt").is_file()
    generator = torch.load(out / "state_last.pt", weights_only=True)["synthesizer"]["generator"]
    assert generator["head.0.weight"].shape[0] == 4  # the generator makes 4-channel images
    with Image.open(out / "samples.png") as grid:
        assert grid.mode == "RGB" and grid.size[0] > 8 * 64  # shown as colour, enlarged


def _grey_teacher(tmp_path):
    torch.manual_seed(0)
    net = create_model("microcnn", num_classes=10, in_channels=1)
    info = ClassifierInfo(arch="microcnn", num_classes=10, input_size=(1, 8, 8), mean=(0.5,), std=(0.25,))
    return save_classifier(tmp_path / "grey.pt", net, info)


def test_test_images_follow_a_grey_teacher(tmp_path, capsys):
    # Shapes are drawn in RGB: with data.channels left open they are converted for the grey teacher.
    common = ["data.test.n=50", f"teacher.checkpoint={_grey_teacher(tmp_path)}", *SMALL, *DEEPINVERSION]
    code, stdout, err = run_in_process(capsys, "distill", *common, f"hydra.run.dir={tmp_path / 'run'}")
    assert code == 0, err[-3000:]
    assert "converted (data.channels chooses)" in stdout + err
    # Asked for RGB explicitly, they do not fit: one line naming the key to change.
    out = tmp_path / "refused"
    overrides = [*common, "data.channels=3"]
    code, stdout, err = run_in_process(capsys, "distill", *overrides, f"hydra.run.dir={out}")
    assert code == 2 and err.count("\n") == 1 and "set data.channels=1" in err, err
    assert not out.exists() and not missing_keys(err, "distill", overrides)


def test_channels_do_not_hide_the_methods_own_check(tmp_path, capsys):
    # A grey GroupNorm teacher given to DeepInversion: the refusal names the method, not a channel count.
    torch.manual_seed(0)
    torch.save(GroupNormNet(10, channels=1).state_dict(), tmp_path / "gn.pt")
    out = tmp_path / "run"
    code, _, err = run_in_process(
        capsys, "distill", "data.test.n=50", "data.channels=1", "teacher=module", "teacher.model._target_=nets.GroupNormNet",
        "+teacher.model.num_classes=10", "+teacher.model.channels=1", f"teacher.checkpoint={tmp_path / 'gn.pt'}",
        *SMALL[:1], "synthesizer=deepinversion", "device=cpu", f"hydra.run.dir={out}")
    assert code == 2 and "no BatchNorm layer" in err and "synthesizer=dfad" in err, err
    assert not out.exists()


def test_a_grey_folder_with_a_few_colour_files_says_it_makes_an_rgb_teacher(tmp_path, capsys):
    """Grey scans with two colour files among them were all read as RGB, the teacher built for 3 channels, with 'RGB'
    in the data line alone: the log says how many are grey and how to keep them grey."""
    data = _image_folder(tmp_path / "images", "L")
    for path in sorted((data / "train").rglob("*.png"))[:2]:
        magenta = np.asarray(Image.open(path).convert("RGB")) * np.array([1, 0, 1], np.uint8)  # not grey any more
        Image.fromarray(magenta).save(path)
    out = tmp_path / "teacher"
    code, stdout, err = run_in_process(capsys, "train-teacher", "data=imagefolder", f"data.root={data}", "data.image_size=8",
                                       "data.batch_size=32", "teacher=tinycnn_shapes", "teacher.arch=microcnn",
                                       "teacher.train.epochs=1", "device=cpu", "progress=false", f"hydra.run.dir={out}")
    assert code == 0, err[-3000:]
    assert ("data: 158 of the 160 training images are grey and 2 in colour: every image is read as RGB, so the teacher "
            "takes RGB images: data.channels=1 reads them all as grey (1 channel), data.channels=3 keeps RGB") in stdout + err
    assert torch.load(out / "teacher.pt", weights_only=True)["input_size"][0] == 3


def test_a_class_of_the_users_for_rgb_trained_on_grey_images_is_told_the_data_s_channels(tmp_path, capsys):
    """train-teacher teacher=module with a class built for RGB, on a grey folder: the line claimed 'the teacher runs in
    evaluation mode but not in training mode', which it did not (it runs in neither); it names the data's shape."""
    data = _image_folder(tmp_path / "images", "L")
    out = tmp_path / "teacher"
    code, _, err = run_in_process(capsys, "train-teacher", "data=imagefolder", f"data.root={data}", "data.image_size=8",
                                  "data.batch_size=32", "teacher=module", "teacher.model._target_=nets.TinyBNNet",
                                  "teacher.train.epochs=1", "device=cpu", "progress=false", f"hydra.run.dir={out}")
    assert code == 2 and "evaluation mode" not in err, err
    assert err.startswith("datafree: error: the teacher does not run on inputs of shape (4, 1, 8, 8) (RuntimeError: ")
    assert err.rstrip().endswith("it must take 1x8x8 images (channels x height x width), the data's: build it for them "
                                 "(a class of yours: with the arguments next to teacher.model._target_).")
    assert not out.exists()
