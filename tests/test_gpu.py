"""GPU checks: the hot paths run on CUDA with bf16 and never wait on the host."""
import pytest
import torch

from nets import calibrated_bn_net
from datafree.data import DeviceBatches, build_dataset
from datafree.distill.trainer import Distiller
from datafree.models import create_model
from datafree.synthesizers import DeepInversion
from datafree.teachers import Normalized, freeze

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _nets(device):
    teacher = freeze(Normalized(create_model("resnet18", num_classes=10), (0.5,) * 3, (0.25,) * 3).to(device))
    student = Normalized(create_model("wrn16_1", num_classes=10), (0.5,) * 3, (0.25,) * 3).to(device)
    return teacher.to(memory_format=torch.channels_last), student.to(memory_format=torch.channels_last)


def test_synthesis_and_student_steps_do_not_sync_with_the_host():
    device = torch.device("cuda")
    teacher, student = _nets(device)
    synth = DeepInversion(batch_size=64, iterations=3, adi_weight=1.0)
    distiller = Distiller(teacher, student, synth, device=device, num_classes=10, input_size=(3, 32, 32),
                          batch_size=64, progress=False)
    batch = synth.synthesize()  # warm-up (cuDNN autotuning may sync)
    distiller.pool.add(batch.images)
    distiller._student_step(batch.images)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        batch = synth.synthesize()
        distiller.pool.add(batch.images)
        for _ in range(3):
            distiller._student_step(batch.images)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert batch.images.is_cuda and batch.images.shape == (64, 3, 32, 32)


def test_device_batches_iterate_without_sync():
    device = torch.device("cuda")
    data = build_dataset("shapes", n=1000, image_size=32)
    batches = DeviceBatches(data, 256, device, shuffle=True, augment=True, seed=0, channels_last=True)
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = [x for x, _ in batches]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert sum(x.shape[0] for x in out) == 1000 and out[0].is_contiguous(memory_format=torch.channels_last)


def test_bn_loss_falls_on_gpu_with_bf16():
    device = torch.device("cuda")
    teacher = freeze(calibrated_bn_net().to(device))
    synth = DeepInversion(batch_size=32, iterations=100, lr=0.1, bn_weight=1.0, ce_weight=0.0, tv_l2_weight=0.0,
                          jitter=0, amp=True)
    synth.bind(teacher, calibrated_bn_net().to(device), 4, (3, 8, 8), device)
    synth.synthesize()
    first = synth.last_losses["bn"].item()
    synth.iterations = 300
    synth.synthesize()
    assert synth.last_losses["bn"].item() < first


def test_generator_rounds_and_student_steps_do_not_sync_with_the_host():
    from datafree.distill.losses import LogitL1Loss
    from datafree.synthesizers import GeneratorSynthesizer

    device = torch.device("cuda")
    teacher, student = _nets(device)
    synth = GeneratorSynthesizer(batch_size=64, latent_dim=32, bn_weight=1.0, oh_weight=1.0, ie_weight=1.0,
                                 adv_loss="masked_kl")
    distiller = Distiller(teacher, student, synth, device=device, num_classes=10, input_size=(3, 32, 32),
                          batch_size=64, replay=0.5, loss=LogitL1Loss(), progress=False)
    batch = synth.synthesize()  # warm-up: cuDNN autotuning may sync
    distiller.pool.add(batch.images)
    distiller._student_step(batch.images)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        batch = synth.synthesize()
        distiller.pool.add(batch.images)
        for _ in range(3):
            distiller._student_step(batch.images)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert batch.images.shape == (64, 3, 32, 32) and torch.isfinite(batch.teacher_logits).all()
