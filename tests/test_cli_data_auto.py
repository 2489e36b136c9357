"""What the real-data recipes leave to auto. data.image_size=auto: a run with a teacher reads its images at the
teacher's input size, train-teacher at the images' own size. data.num_classes=auto (data=imagefolder): the class
folders, counted from their names. A number still chooses."""
import shutil

import torch
from PIL import Image

from test_cli import run_in_process
from test_cli_channels import _image_folder

TEACHER = ["teacher=tinycnn_shapes", "teacher.arch=microcnn", "teacher.train.epochs=1", "data.batch_size=32",
           "device=cpu", "progress=false"]
DISTILL = ["teacher=tinycnn_shapes", "teacher.arch=microcnn", "student=microcnn", "trainer.rounds=2", "trainer.student_steps=2", "trainer.batch_size=16",
           "trainer.eval_every=1", "noise_baseline=false", "synthesizer.batch_size=16", "synthesizer.iterations=3",
           "device=cpu", "progress=false"]


def _folder(tmp_path):
    return _image_folder(tmp_path / "images", "L")  # 8x8 grey PNGs, 4 classes


def _train_teacher(tmp_path, capsys, data, *size):
    out = tmp_path / "teacher"
    code, _, err = run_in_process(capsys, "train-teacher", "data=imagefolder", f"data.root={data}", *TEACHER, *size,
                                  f"hydra.run.dir={out}")
    assert code == 0, err[-3000:]
    return out


def test_train_teacher_reads_the_images_at_their_own_size_and_says_what_it_read(tmp_path, capsys):
    out = _train_teacher(tmp_path, capsys, _folder(tmp_path))
    assert torch.load(out / "teacher.pt", weights_only=True)["input_size"] == [1, 8, 8]
    assert ("data: 160 training images, grey, 8x8, 4 classes; 80 test images; augmentation: a 4-pixel padded crop "
            "and a flip (data.crop)") in (out / "train-teacher.log").read_text()


def test_images_that_are_not_square_make_a_teacher_of_their_height_and_width_and_a_student_likewise(tmp_path, capsys):
    """Read at their own size (documents, scans: 12 high, 8 wide here), they are not squeezed into a square: the teacher
    is trained on them and recorded at 12x8, and distill reads the test images as they are and makes 12x8 images."""
    data = _folder(tmp_path)
    for path in data.rglob("*.png"):
        Image.open(path).resize((8, 12)).save(path)  # PIL takes (width, height)
    out = _train_teacher(tmp_path, capsys, data)
    assert torch.load(out / "teacher.pt", weights_only=True)["input_size"] == [1, 12, 8]
    assert "data: 160 training images, grey, 12x8, 4 classes" in (out / "train-teacher.log").read_text()
    run = tmp_path / "run"
    code, stdout, err = run_in_process(capsys, "distill", "data=imagefolder", f"data.root={data}", "data.num_classes=4",
                                       f"teacher.checkpoint={out / 'teacher.pt'}", *DISTILL, f"hydra.run.dir={run}")
    assert code == 0, err[-3000:]
    assert "student microcnn: test accuracy" in stdout
    assert torch.load(run / "student.pt", weights_only=True)["input_size"] == [1, 12, 8]
    # A synthetic set of 12x8 images, audited against the folder and distilled from offline: the real images are
    # read at their own size, not squeezed to 12x12.
    synthetic = tmp_path / "set"
    code, _, err = run_in_process(capsys, "synthesize", f"teacher.checkpoint={out / 'teacher.pt'}", "n=16",
                                  "batch_size=16", "synthesizer.iterations=2", "class_counts=as_drawn",
                                  f"out={synthetic}", "device=cpu", "progress=false", f"hydra.run.dir={tmp_path / 'synth'}")
    assert code == 0, err[-3000:]
    code, _, err = run_in_process(capsys, "audit", f"synthetic={synthetic}", "data=imagefolder", f"data.root={data}",
                                  f"teacher.checkpoint={out / 'teacher.pt'}", "device=cpu", "progress=false",
                                  f"hydra.run.dir={tmp_path / 'audit'}")
    assert code == 0, err[-3000:]
    code, _, err = run_in_process(capsys, "distill", "data=synthetic", f"data.path={synthetic}", "student=microcnn",
                                  "trainer.rounds=1", "trainer.student_steps=2", "trainer.batch_size=8", "device=cpu",
                                  "progress=false", f"hydra.run.dir={tmp_path / 'offline'}")
    assert code == 0, err[-3000:]


def test_a_test_split_without_some_classes_is_labelled_by_its_folder_names(tmp_path, capsys):
    """A test folder that lacks a training class: labels follow the names (by position, every image after the gap
    would carry the next class's label); a test folder that names no training class is refused."""
    import shutil as _shutil

    data = _folder(tmp_path)
    classes = sorted(p.name for p in (data / "test").iterdir())
    _shutil.rmtree(data / "test" / classes[0])  # the test split lacks the first class
    out = _train_teacher(tmp_path, capsys, data)
    log = (out / "train-teacher.log").read_text()
    assert f"data: the test images hold 3 of the 4 classes of the training images (none of {classes[0]}): labelled by " \
           "name" in log
    assert "answers one class" not in log
    from datafree.data import load_image_folder
    test = load_image_folder(data / "test", cache=False)
    assert test.classes == classes[1:]  # read alone, the folders are 0..2; the run labelled them 1..3
    run = tmp_path / "run"
    code, stdout, err = run_in_process(capsys, "distill", "data=imagefolder", f"data.root={data}",
                                       f"teacher.checkpoint={out / 'teacher.pt'}", *DISTILL, f"hydra.run.dir={run}")
    assert code == 0, err[-3000:]
    assert "labelled by name" in (run / "distill.log").read_text()
    (data / "test" / classes[1]).rename(data / "test" / "unknown")
    code, _, err = run_in_process(capsys, "train-teacher", "data=imagefolder", f"data.root={data}", *TEACHER,
                                  f"hydra.run.dir={tmp_path / 'refused'}")
    assert code != 0 and "the test images' class folders unknown are not among the training images" in err


def test_distill_reads_the_test_images_at_the_teachers_size(tmp_path, capsys):
    data = _folder(tmp_path)
    teacher = _train_teacher(tmp_path, capsys, data, "data.image_size=16") / "teacher.pt"
    out = tmp_path / "run"
    code, stdout, err = run_in_process(capsys, "distill", "data=imagefolder", f"data.root={data}", "data.num_classes=4",
                                       f"teacher.checkpoint={teacher}", *DISTILL, f"hydra.run.dir={out}")
    assert code == 0, err[-3000:]
    assert "student microcnn: test accuracy" in stdout
    # the checkpoint declares 16 px: the images are read once, at that size
    assert ("data: the test images are read at the teacher's input size, 16x16 (data.image_size=auto follows the "
            "teacher, a number chooses)") in (out / "distill.log").read_text()
    assert torch.load(out / "student.pt", weights_only=True)["input_size"] == [1, 16, 16]


def test_distill_reads_images_of_several_sizes_at_the_teachers_size(tmp_path, capsys):
    data = _folder(tmp_path)
    teacher = _train_teacher(tmp_path, capsys, data, "data.image_size=16") / "teacher.pt"
    odd = next((data / "test").rglob("*.png"))
    Image.open(odd).resize((12, 12)).save(odd)  # one test image of another size
    out = tmp_path / "run"
    code, _, err = run_in_process(capsys, "distill", "data=imagefolder", f"data.root={data}", "data.num_classes=4",
                                  f"teacher.checkpoint={teacher}", *DISTILL, f"hydra.run.dir={out}")
    assert code == 0, err[-3000:]
    assert "read at the teacher's input size, 16x16" in (out / "distill.log").read_text()


def test_a_teacher_that_declares_no_size_gets_the_test_split_read_again_at_its_own(tmp_path):
    """Without a declared size (a bare state dict, a torchvision or module network) the split is read at its own size
    for the teacher's data hint, or not at all when its images differ; then at the size the loaded teacher takes."""
    from omegaconf import OmegaConf

    from datafree.jobs import read_test_split_at_teacher_size, read_test_split_before_teacher

    data = _folder(tmp_path)
    cfg = OmegaConf.create({"data": {"image_size": "auto", "channels": None, "test": {
        "_target_": "datafree.data.build_dataset", "kind": "imagefolder", "split": "test", "root": str(data),
        "image_size": "${data.image_size}", "channels": "${data.channels}"}}})
    said = []
    logger = type("Logger", (), {"info": lambda self, line: said.append(line)})()
    bare = OmegaConf.create({"checkpoint": None, "input_size": None})
    assert read_test_split_before_teacher(cfg.data, bare, logger).image_size == 8 and not said  # its own size
    odd = next((data / "test").rglob("*.png"))
    Image.open(odd).resize((12, 12)).save(odd)
    assert read_test_split_before_teacher(cfg.data, bare, logger) is None
    again = read_test_split_at_teacher_size(cfg.data, None, (1, 16, 16), logger)
    assert again.images.shape[1:] == (1, 16, 16) and len(again) == 80
    assert said == ["data: the test images are read at the teacher's input size, 16x16 (they differ in size; "
                    "data.image_size=auto follows the teacher, a number chooses)"]


def test_a_size_that_is_set_is_kept_and_a_mismatch_named(tmp_path, capsys):
    data = _folder(tmp_path)
    teacher = _train_teacher(tmp_path, capsys, data, "data.image_size=16") / "teacher.pt"
    code, _, err = run_in_process(capsys, "distill", "data=imagefolder", f"data.root={data}", "data.num_classes=4",
                                  "data.image_size=8", f"teacher.checkpoint={teacher}", *DISTILL,
                                  f"hydra.run.dir={tmp_path / 'run'}")
    assert code == 2 and "set data.image_size=16 to resize the test images" in err, err[-2000:]


def test_train_teacher_on_images_of_several_sizes_asks_for_a_size(tmp_path, capsys):
    data = _folder(tmp_path)
    odd = next((data / "train").rglob("*.png"))
    Image.open(odd).resize((12, 12)).save(odd)
    out = tmp_path / "teacher"
    code, _, err = run_in_process(capsys, "train-teacher", "data=imagefolder", f"data.root={data}",
                                  "data.num_classes=4", *TEACHER, f"hydra.run.dir={out}")
    assert code == 2 and "images differ in size" in err and "data.image_size=N" in err, err[-2000:]
    assert not (out / "teacher.pt").exists()


def test_a_bad_image_size_names_auto(tmp_path, capsys):
    code, _, err = run_in_process(capsys, "train-teacher", "data=imagefolder", f"data.root={tmp_path}",
                                  "data.num_classes=4", "data.image_size=big", *TEACHER,
                                  f"hydra.run.dir={tmp_path / 'run'}")
    assert code == 2 and "data.image_size" in err and "auto, null or an int >= 8" in err, err[-2000:]


def test_distill_counts_the_class_folders_of_a_test_set_alone(tmp_path, capsys):
    data = _folder(tmp_path)
    teacher = _train_teacher(tmp_path, capsys, data) / "teacher.pt"
    shutil.rmtree(data / "train")  # only test images, as a teacher's owner may have
    out = tmp_path / "run"
    code, stdout, err = run_in_process(capsys, "distill", "data=imagefolder", f"data.root={data}",
                                       f"teacher.checkpoint={teacher}", *DISTILL, f"hydra.run.dir={out}")
    assert code == 0 and "student microcnn: test accuracy" in stdout, err[-3000:]


def test_a_folder_with_more_classes_than_the_teacher_is_refused(tmp_path, capsys):
    data = _folder(tmp_path)
    teacher = _train_teacher(tmp_path, capsys, data) / "teacher.pt"
    (data / "test" / "extra").mkdir()
    shutil.copy(next((data / "test").rglob("*.png")), data / "test" / "extra" / "x.png")
    shutil.rmtree(data / "train")
    out = tmp_path / "run"
    code, _, err = run_in_process(capsys, "distill", "data=imagefolder", f"data.root={data}",
                                  f"teacher.checkpoint={teacher}", *DISTILL, f"hydra.run.dir={out}")
    assert code == 2 and "the teacher has 4 classes but the data set has 5 (data.num_classes)" in err, err[-2000:]
    assert not out.exists()


def test_a_root_without_class_folders_is_named(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "run"
    code, _, err = run_in_process(capsys, "train-teacher", "data=imagefolder", f"data.root={tmp_path / 'empty'}",
                                  *TEACHER, f"hydra.run.dir={out}")
    assert code == 2 and "holds no train" in err and err.count("\n") == 1, err[-2000:]


def test_a_run_with_autos_resumes_and_a_changed_folder_is_named(tmp_path, capsys):
    """The saved state records what auto became (16 px, 4 classes) while the composed recipe still says auto: a resume
    is not refused for that; auto is resolved again, and a folder that now holds another class is named."""
    data = _folder(tmp_path)
    teacher = _train_teacher(tmp_path, capsys, data, "data.image_size=16") / "teacher.pt"
    out = tmp_path / "run"
    args = ["distill", "data=imagefolder", f"data.root={data}", f"teacher.checkpoint={teacher}", *DISTILL]
    code, _, err = run_in_process(capsys, *args, f"hydra.run.dir={out}")
    assert code == 0, err[-3000:]
    code, _, err = run_in_process(capsys, *args, "trainer.rounds=3", f"resume={out}")
    assert code == 0, err[-3000:]
    assert "resumed from" in (out / "distill.log").read_text()
    (data / "test" / "extra").mkdir()  # a fifth class: auto now counts 5 where the run had 4
    shutil.copy(next((data / "test").rglob("*.png")), data / "test" / "extra" / "x.png")
    shutil.rmtree(data / "train")
    code, _, err = run_in_process(capsys, *args, "trainer.rounds=4", f"resume={out}")
    assert code == 2 and "the teacher has 4 classes but the data set has 5" in err, err[-2000:]


def test_a_training_folder_of_one_class_is_refused(tmp_path, capsys):
    data = _image_folder(tmp_path / "one", "L", classes=1)  # was trained to 100% on its one class
    out = tmp_path / "run"
    code, _, err = run_in_process(capsys, "train-teacher", "data=imagefolder", f"data.root={data}", *TEACHER,
                                  f"hydra.run.dir={out}")
    assert code == 2 and "the training images hold one class: a classifier needs two or more" in err, err[-2000:]
    assert not out.exists()
