"""Is a student that answers one class dead, or alive but wrong? Its stages on its own training images.

    python benchmarks/inspect_student.py STUDENT.pt TEACHER.pt RUN_DIR [--images 128] [--threads 2]
        [--test TEST_ARCHIVE [--test-images 1000]]

Loads a distill run's student.pt and its teacher, takes the newest ``--images`` synthetic images of RUN_DIR's saved
replay pool (what the student learned from), and prints, in evaluation mode (running statistics) and in training mode
(the batch's own statistics), the classes the student gives them, its agreement with the teacher, and for each
ResNet-style stage (``layer1`` ... ``layer4``) how much its output varies over the images (the mean over features
of the standard deviation across images) and its share above zero. A stage at 0 in both modes has died: everything
after it answers every image alike, whatever the running statistics. With --test, it also evaluates the student as
distill does on a sample of real test images, the teacher beside it, and says whether the student is flat as a dead
one is (one class for 90% of the images or more, its logits moving by less than 5% of the teacher's range). distill
calls a student dead only when it stays so without its range doubling for 200 student steps: a MobileNetV3 starts flat.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bn_scale import pool_images  # noqa: E402

from datafree.data import load_tarball  # noqa: E402
from datafree.distill.trainer import Distiller  # noqa: E402
from datafree.evaluate import evaluate  # noqa: E402
from datafree.teachers import load_classifier  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("student")
    parser.add_argument("teacher")
    parser.add_argument("run_dir")
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--test", help="a test archive (tar.gz of class folders): evaluate as distill does")
    parser.add_argument("--test-images", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    student, info = load_classifier(args.student)
    teacher, _ = load_classifier(args.teacher)
    images = pool_images(args.run_dir, args.images).float().div_(255)
    stages = {name: module for name, module in student.named_modules() if name.split(".")[-1].startswith("layer")
              and name.split(".")[-1][5:].isdigit()}
    outputs: dict[str, torch.Tensor] = {}
    for name, module in stages.items():
        module.register_forward_hook(lambda m, i, o, name=name: outputs.__setitem__(name, o.detach()))
    teacher.eval()
    with torch.no_grad():
        answers = teacher(images).argmax(1)
    print(f"{info.arch}: {images.shape[0]} synthetic images of {args.run_dir}; the teacher gives classes "
          f"{answers.bincount(minlength=info.num_classes).tolist()}")
    if args.test:  # first: a training-mode pass below moves the running statistics
        test = load_tarball(args.test, image_size=info.input_size[-1]).sample(args.test_images, seed=0)
        pixels, labels = test.images.float().div_(255), torch.as_tensor(test.labels)
        batches = list(zip(pixels.split(250), labels.split(250)))
        result = evaluate(student, batches, torch.device("cpu"), amp=False, num_classes=info.num_classes,
                          reference=teacher)
        print(f"{len(labels)} real test images: " + ", ".join(f"{k} {v:.4g}" for k, v in result.items())
              + f"; flat as a dead student is (distill calls it dead once it stays so for "
              f"{Distiller.DEAD_AFTER_STEPS} student steps): {Distiller.is_dead(result)}")
    for mode in ("eval", "train"):
        student.train(mode == "train")
        with torch.no_grad():
            logits = student(images)
        given = logits.argmax(1)
        spread = (logits.amax(0) - logits.amin(0)).max()
        print(f"{mode} mode: classes {given.bincount(minlength=info.num_classes).tolist()}, agreement "
              f"{(given == answers).float().mean():.3f}, largest logit range {spread:.3g}")
        for name, out in outputs.items():
            live = (out > 0).float().mean()
            print(f"  {name:24s} variation over images {out.std(0).mean():9.4f}   share > 0 {live:.3f}")


if __name__ == "__main__":
    main()
