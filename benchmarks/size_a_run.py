"""What one round of the fast recipe costs for a teacher, a student and an image size: size a run before starting it.

    python benchmarks/size_a_run.py --teacher torchvision:resnet50 --student torchvision:mobilenet_v3_large \
        --size 224 --classes 10 --batch 64 128 256 [--no-graphs]

Networks have random weights (the cost does not depend on them). For each batch size: the generator step and
the student step (milliseconds, mean of timed repetitions after warm-up, the device synchronised around each
timed block), the peak GPU memory, and what a round of the fast recipe (``g_steps`` generator steps for one
synthesized batch, then ``student_steps`` student steps on batches twice as large) makes per second: synthesized
images and student steps.
"""
from __future__ import annotations

import argparse

import torch

from datafree.api import make_student
from datafree.distill.trainer import Distiller
from datafree.synthesizers import Augment, FastSynthesizer
from datafree.teachers import ClassifierInfo, Normalized, freeze
from datafree.teachers.students import build_student
from datafree.utils.device import network_layout, resolve_device
from speed import timed  # benchmarks/speed.py: mean of timed repetitions after warm-up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="torchvision:resnet50")
    parser.add_argument("--student", default="torchvision:mobilenet_v3_large")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--batch", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--g-steps", type=int, default=20)
    parser.add_argument("--student-steps", type=int, default=20)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--no-graphs", action="store_true")
    args = parser.parse_args()
    device = resolve_device("cuda")
    graphs = not args.no_graphs
    info = ClassifierInfo(args.teacher, args.classes, (3, args.size, args.size), (0.485, 0.456, 0.406),
                          (0.229, 0.224, 0.225))
    net, _ = build_student(args.teacher, args.classes, 3, (args.size, args.size))  # a ViT is built for the size
    teacher = network_layout(freeze(Normalized(net, info.mean, info.std).to(device)), device)
    print(f"device: {torch.cuda.get_device_name(device)}; torch {torch.__version__}; teacher {args.teacher}, student "
          f"{args.student}, {args.size}x{args.size}, {args.classes} classes, bf16, channels_last, CUDA graphs {graphs}")
    print(f"{'batch':>6}{'generator step ms':>19}{'student step ms':>17}{'peak GiB':>10}{'images/s':>10}{'student steps/s':>17}")
    for batch in args.batch:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        student, _ = make_student(args.student, info, device)
        synth = FastSynthesizer(batch_size=batch, g_steps=args.g_steps, cuda_graphs=graphs)
        distiller = Distiller.from_options(teacher, network_layout(student, device), synth, device=device,
                                           num_classes=args.classes, input_size=info.input_size, batch_size=2 * batch,
                                           replay=1.0, pool_capacity=20 * batch, cuda_graphs=graphs, progress=False,
                                           augment=Augment(flip=True, crop_padding=args.size // 8))
        distiller.source.new_round()  # a first batch in the bank
        student.eval()
        with synth._bn:
            t_gen = timed(synth._step, device, warmup=4, reps=args.reps)
        student.train()
        t_student = timed(distiller._update, device, warmup=4, reps=args.reps)
        peak = torch.cuda.max_memory_allocated(device) / 2**30
        round_s = args.g_steps * t_gen + args.student_steps * t_student
        print(f"{batch:>6}{1000 * t_gen:>19.1f}{1000 * t_student:>17.1f}{peak:>10.1f}{batch / round_s:>10.0f}"
              f"{args.student_steps / round_s:>17.1f}")
        del distiller, synth, student


if __name__ == "__main__":
    main()
