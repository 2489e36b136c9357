"""What one round of the fast recipe costs for a teacher, a student and an image size: size a run before starting it.

    python benchmarks/size_a_run.py --teacher torchvision:resnet50 --student torchvision:mobilenet_v3_large \
        --size 224 --classes 10 --batch 64 128 256 [--no-graphs] [--device cpu]

Networks have random weights (the cost does not depend on them). For each batch size: the generator step and
the student step (milliseconds, mean of timed repetitions after warm-up, the device synchronised around each
timed block), the peak memory (on a GPU, what torch allocated; on the CPU, the process's peak resident size so far,
which only grows from one batch to the next), and what a round of the fast recipe (``g_steps`` generator steps for one
synthesized batch, then ``student_steps`` student steps on batches twice as large) makes per second: synthesized
images and student steps. And what comes before the first round, which a run's budget does not count: the trainer's
set-up (on a GPU, its probe that the student fits at its batch: a forward and backward in the steps' layout) and the
first synthesized batch with the first generator and student steps (their CUDA graphs captured), in seconds, the
device synchronised. cuDNN chooses its kernels for each new convolution shape the first time it meets it
(``cudnn.benchmark``, which datafree turns on for a GPU): ``--no-cudnn-benchmark`` turns that search off, to see what it
costs at set-up and what it gains in the steps. ``--generator-layout nchw|channels_last`` sets the generator's
memory layout instead of datafree's rule (``utils.device.generator_layout``: channels_last on every device, since
this priced it), to price a whole generator step, the teacher's forward and backward in it, in each layout.
"""
from __future__ import annotations

import argparse
import contextlib
import resource
import time
from unittest import mock

import torch

from datafree.api import checked_student
from datafree.distill.trainer import Distiller
from datafree.synthesizers import Augment, FastSynthesizer, fast
from datafree.teachers import ClassifierInfo, Normalized, freeze
from datafree.teachers.students import build_student
from datafree.utils.device import network_layout, resolve_device
from speed import timed  # benchmarks/speed.py: mean of timed repetitions after warm-up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default="torchvision:resnet50",
                        help="a zoo name (resnet34), torchvision:NAME or timm:NAME, as make_student takes it")
    parser.add_argument("--student", default="torchvision:mobilenet_v3_large", help="likewise")
    parser.add_argument("--size", type=int, default=224, help="image side in pixels (square, RGB)")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--batch", type=int, nargs="+", default=[64, 128, 256],
                        help="synthesis batch sizes to price (the student's batch is twice each)")
    parser.add_argument("--g-steps", type=int, default=20, help="generator steps per round (the fast recipe's)")
    parser.add_argument("--student-steps", type=int, default=20, help="student steps per round (the fast recipe's)")
    parser.add_argument("--reps", type=int, default=10, help="timed repetitions after the warm-up")
    parser.add_argument("--no-graphs", action="store_true", help="eager steps instead of CUDA graphs")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (auto: a GPU when one is visible)")
    parser.add_argument("--no-cudnn-benchmark", action="store_true",
                        help="cuDNN's heuristics choose the kernels instead of timing the candidates")
    parser.add_argument("--generator-layout", choices=["rule", "nchw", "channels_last"], default="rule",
                        help="the generator's memory layout (rule: datafree's, utils.device.generator_layout)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.no_cudnn_benchmark:
        torch.backends.cudnn.benchmark = False
    on_gpu = device.type == "cuda"
    graphs = on_gpu and not args.no_graphs
    info = ClassifierInfo(args.teacher, args.classes, (3, args.size, args.size), (0.485, 0.456, 0.406),
                          (0.229, 0.224, 0.225))
    net, _ = build_student(args.teacher, args.classes, 3, (args.size, args.size))  # a ViT is built for the size
    teacher = network_layout(freeze(Normalized(net, info.mean, info.std).to(device)), device)
    name = torch.cuda.get_device_name(device) if on_gpu else f"CPU ({torch.get_num_threads()} threads)"
    precision = (f"bf16, channels_last, CUDA graphs {graphs}, cudnn.benchmark {torch.backends.cudnn.benchmark}"
                 if on_gpu else "float32 (as distill runs on the CPU)")
    print(f"device: {name}; torch {torch.__version__}; teacher {args.teacher}, student "
          f"{args.student}, {args.size}x{args.size}, {args.classes} classes, {precision}"
          + ("" if args.generator_layout == "rule" else f", generator {args.generator_layout}"))
    print(f"{'batch':>6}{'generator step ms':>19}{'student step ms':>17}{'peak GiB':>10}{'images/s':>10}"
          f"{'student steps/s':>17}{'set-up s':>10}{'first steps s':>15}")
    for batch in args.batch:
        if on_gpu:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        student, _ = checked_student(args.student, info, device)
        synth = FastSynthesizer(batch_size=batch, g_steps=args.g_steps, cuda_graphs=graphs)
        start = clock(device)
        with generator_layout(args.generator_layout):  # the synthesizer builds its generator as the trainer sets it up
            distiller = Distiller.from_options(teacher, network_layout(student, device), synth, device=device,
                                               num_classes=args.classes, input_size=info.input_size,
                                               batch_size=2 * batch, replay=1.0, pool_capacity=20 * batch,
                                               cuda_graphs=graphs, progress=False,
                                               augment=Augment(flip=True, crop_padding=args.size // 8))
        built = clock(device)
        distiller.source.new_round()  # a first batch in the bank
        student.eval()
        with synth._bn:
            synth._step()
            student.train()
            distiller._update()
            first = clock(device)
            student.eval()
            t_gen = timed(synth._step, device, warmup=3, reps=args.reps)
        student.train()
        t_student = timed(distiller._update, device, warmup=3, reps=args.reps)
        peak = (torch.cuda.max_memory_allocated(device) if on_gpu else
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**30  # ru_maxrss: KiB on Linux
        round_s = args.g_steps * t_gen + args.student_steps * t_student
        print(f"{batch:>6}{1000 * t_gen:>19.1f}{1000 * t_student:>17.1f}{peak:>10.1f}{batch / round_s:>10.0f}"
              f"{args.student_steps / round_s:>17.1f}{built - start:>10.1f}{first - built:>15.1f}")
        del distiller, synth, student


def generator_layout(layout: str) -> contextlib.AbstractContextManager:
    """datafree's rule for the generator's layout (``rule``), or one layout on every device."""
    if layout == "rule":
        return contextlib.nullcontext()
    memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    return mock.patch.object(fast, "generator_layout", lambda generator: generator.to(memory_format=memory_format))


def clock(device: torch.device) -> float:
    """The time once the device has done what it was given."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


if __name__ == "__main__":
    main()
