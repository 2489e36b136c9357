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


def _noise_distiller(graphs: bool, **options):
    """A WRN-16-1 student of a ResNet-18 teacher on noise, 64-image batches from a replay pool of up to 1,024 (seed 0)."""
    from datafree.synthesizers import NoiseSynthesizer

    torch.manual_seed(0)
    teacher, student = _nets(torch.device("cuda"))
    return Distiller.from_options(teacher, student, NoiseSynthesizer(batch_size=64), device=torch.device("cuda"),
                                  num_classes=10, input_size=(3, 32, 32), batch_size=64, replay=1.0,
                                  pool_capacity=1024, progress=False, cuda_graphs=graphs, **options)


def _round_without_sync(distiller):
    """One warm-up round (cuDNN autotuning may sync), then a round that fails on any host sync; its images."""
    distiller.source.new_round()
    distiller._update()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        distiller.source.new_round()
        for _ in range(3):
            distiller._update()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return distiller.source.fresh


def test_synthesis_and_student_steps_do_not_sync_with_the_host():
    device = torch.device("cuda")
    teacher, student = _nets(device)
    synth = DeepInversion(batch_size=64, iterations=3, adi_weight=1.0)
    distiller = Distiller.from_options(teacher, student, synth, device=device, num_classes=10, input_size=(3, 32, 32),
                                       batch_size=64, progress=False)
    images = _round_without_sync(distiller)
    assert images.is_cuda and images.shape == (64, 3, 32, 32)


def test_feature_terms_do_not_sync_with_the_host():
    device = torch.device("cuda")
    teacher, student = _nets(device)  # resnet18 (64..512 channels) -> wrn16_1 (16..64): hint adapters
    synth = DeepInversion(batch_size=64, iterations=2)
    layers = {"teacher_layers": ["layer2", "layer3"], "student_layers": ["block2", "block3"]}
    distiller = Distiller.from_options(teacher, student, synth, device=device, num_classes=10, input_size=(3, 32, 32),
                                       batch_size=64, progress=False, attention={"weight": 250.0, **layers}, hint={"weight": 1.0, **layers})
    assert [type(a).__name__ for a in distiller.objectives.features[1].adapters] == ["Conv2d", "Conv2d"]
    _round_without_sync(distiller)


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
    distiller = Distiller.from_options(teacher, student, synth, device=device, num_classes=10, input_size=(3, 32, 32),
                                       batch_size=64, replay=0.5, loss=LogitL1Loss(), progress=False)
    images = _round_without_sync(distiller)
    assert images.shape == (64, 3, 32, 32) and torch.isfinite(images).all()


def test_torchscript_and_torchvision_teachers_on_the_gpu(tmp_path):
    import warnings

    import torchvision

    from datafree.distill.losses import LogitL1Loss
    from datafree.synthesizers import GeneratorSynthesizer
    from datafree.teachers import load_teacher

    device = torch.device("cuda")
    torch.save(torchvision.models.resnet50(num_classes=10).state_dict(), tmp_path / "r50.pt")
    tv = load_teacher("torchvision", name="resnet50", checkpoint=str(tmp_path / "r50.pt"), device=device)
    assert tv.info.input_size == (3, 224, 224) and next(tv.model.parameters()).is_cuda
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(create_model("resnet18", num_classes=10).eval()), str(tmp_path / "t.ts"))
    ts = load_teacher("torchscript", checkpoint=str(tmp_path / "t.ts"), input_size=[3, 32, 32], device=device)
    _, student = _nets(device)
    synth = GeneratorSynthesizer(batch_size=64, latent_dim=32)
    distiller = Distiller.from_options(ts.model, student, synth, device=device, num_classes=10, input_size=(3, 32, 32),
                                       batch_size=64, replay=0.5, loss=LogitL1Loss(), progress=False)
    assert torch.isfinite(_round_without_sync(distiller)).all()


def test_real_out_of_memory_halves_the_synthesis_batch(tmp_path):
    device = torch.device("cuda")
    teacher, student = _nets(device)
    synth = DeepInversion(batch_size=2**17, iterations=1)  # ~17 GB per bf16 activation of the first stage: cannot fit
    distiller = Distiller.from_options(teacher, student, synth, device=device, num_classes=10, input_size=(3, 32, 32), rounds=1,
                                       student_steps=1, batch_size=64, progress=False, halve_synthesis_on_oom=True)
    result = distiller.fit()
    assert result.rounds == 1 and 1 <= synth.batch_size < 2**17
    synth.batch_size = 2**17
    distiller = Distiller.from_options(teacher, student, synth, device=device, num_classes=10, input_size=(3, 32, 32), rounds=1,
                                       student_steps=1, batch_size=64, progress=False)
    from datafree.errors import DatafreeError

    with pytest.raises(DatafreeError, match=r"out of GPU memory while synthesizing a batch of synthesizer.batch_size=131072"):
        distiller.fit()


def test_sigterm_and_resume_on_the_gpu(tmp_path):
    import os
    import signal

    from datafree.synthesizers import GeneratorSynthesizer
    from datafree.utils.logging import RunLogger
    from datafree.utils.run_state import StateFiles
    from datafree.utils.signals import Interrupted

    device = torch.device("cuda")

    def make(resume):
        torch.manual_seed(0)
        teacher, student = _nets(device)
        return Distiller.from_options(teacher, student, GeneratorSynthesizer(batch_size=64, latent_dim=32), device=device,
                                      num_classes=10, input_size=(3, 32, 32), rounds=4, student_steps=3, batch_size=64,
                                      progress=False, logger=RunLogger(tmp_path, tensorboard=False, enabled=False),
                                      state=StateFiles(tmp_path, config={"x": 1}, resume=resume, notice=lambda m: None))

    first = make(False)
    step_fn, calls = first._step, [0]

    def step(*batch):
        calls[0] += 1
        if calls[0] == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        return step_fn(*batch)

    first._step = step
    with pytest.raises(Interrupted):
        first.fit()
    result = make(True).fit()
    assert result.student_steps == 12 and result.rounds == 4


def _fast_distiller():
    """The fast recipe's hot path on the GPU, graphed: a FastSynthesizer and a distiller replaying from its bank."""
    from datafree.distill.losses import KDLoss
    from datafree.synthesizers import Augment, FastSynthesizer

    device = torch.device("cuda")
    teacher, student = _nets(device)
    synth = FastSynthesizer(batch_size=64, g_steps=5, cuda_graphs=True)
    distiller = Distiller.from_options(teacher, student, synth, device=device, num_classes=10, input_size=(3, 32, 32),
                                       batch_size=64, replay=1.0, pool_capacity=1024, progress=False, cuda_graphs=True,
                                       loss=KDLoss(temperature=4.0), augment=Augment(flip=True, crop_padding=4))
    return synth, distiller, student


def test_fast_rounds_replay_as_cuda_graphs_without_host_sync():
    """The fast recipe's hot path: captured generator steps and captured student steps from the bank."""
    synth, distiller, student = _fast_distiller()
    for _ in range(2):  # warm-up and capture (cuDNN autotuning may sync)
        distiller.source.new_round()
        for _ in range(4):
            distiller._update()
    assert synth._step.graph is not None and distiller._captured.graph is not None
    before = [p.clone() for p in student.parameters()]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        distiller.source.new_round()
        distiller._set_lr(0.5, 0)  # a new learning rate reaches the captured step through its tensor
        losses = [distiller._update().clone() for _ in range(3)]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(torch.isfinite(loss) for loss in losses) and len(distiller.source.pool) == 192
    assert any(not torch.equal(p, q) for p, q in zip(before, student.parameters()))  # the replays train the student


def test_warm_ups_and_captures_keep_every_gradient_on_one_stream():
    """The fast rounds' warm-ups and captures share one side stream: no AccumulateGrad stream mismatch (PyTorch
    warns of one when a gradient accumulator made on one stream meets a backward on another)."""
    import warnings

    synth, distiller, student = _fast_distiller()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):  # warm-up, capture, replays
            distiller.source.new_round()
            for _ in range(4):
                distiller._update()
        torch.cuda.synchronize()
    assert synth._step.graph is not None and distiller._captured.graph is not None
    assert not [w for w in caught if "AccumulateGrad" in str(w.message)]


def test_objectives_without_sync_and_in_a_captured_student_step():
    """Relation and adversarial terms never wait on the host; on logits they are captured with the student step
    (the discriminator's own optimiser step inside the graph), on penultimate features the step runs eagerly."""
    from datafree.synthesizers import Augment, NoiseSynthesizer

    device = torch.device("cuda")
    teacher, student = _nets(device)
    synth = DeepInversion(batch_size=64, iterations=2)
    distiller = Distiller.from_options(teacher, student, synth, device=device, num_classes=10, input_size=(3, 32, 32),
                                       batch_size=64, progress=False, rkd={"distance_weight": 25.0, "angle_weight": 50.0},
                                       discriminator={"weight": 0.1, "embedding": "penultimate", "every": 2},
                                       similarity={"weight": 3000.0, "teacher_layers": ["layer4"], "student_layers": ["block3"]})
    assert distiller._captured is None
    _round_without_sync(distiller)

    teacher, student = _nets(device)
    distiller = Distiller.from_options(teacher, student, NoiseSynthesizer(batch_size=64), device=device, num_classes=10,
                                       input_size=(3, 32, 32), batch_size=64, replay=0.0, progress=False, cuda_graphs=True,
                                       augment=Augment(jitter=0, flip=True), rkd={"distance_weight": 25.0, "embedding": "logits"},
                                       discriminator={"weight": 0.1, "embedding": "logits", "steps": 2, "every": 2})
    assert distiller._captured is not None
    distiller.source.new_round()
    for _ in range(4):  # warm-up (eager) and the capture
        distiller._update()
    before = [p.detach().clone() for p in distiller.objectives.adversary.net.parameters()]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(4):
            values = distiller._update()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert distiller._captured.graph is not None and torch.isfinite(values).all()
    assert distiller.objectives.adversary.rounds.item() == 8
    assert any(not torch.equal(p, q) for p, q in zip(distiller.objectives.adversary.net.parameters(), before))


def test_a_stored_set_feeds_a_captured_student_step_through_its_input_buffers(tmp_path):
    """Offline distillation with trainer.cuda_graphs: the batches are cut outside the graph and copied into its
    buffers; the graphed steps compute what eager steps compute."""
    from datafree.distill.sources import StoredSource
    from datafree.export import SyntheticSet, synthesize_dataset
    from datafree.synthesizers import NoiseSynthesizer
    from datafree.teachers import ClassifierInfo, Teacher

    device = torch.device("cuda")
    teacher, _ = _nets(device)
    info = ClassifierInfo("resnet18", 10, (3, 32, 32), (0.5,) * 3, (0.25,) * 3)
    synthesize_dataset(Teacher(teacher, info), NoiseSynthesizer(batch_size=64), tmp_path / "set", 256, progress=False,
                       class_counts="as_drawn",
                       log=lambda _: None)
    losses = {}
    for graphs in (False, True):
        torch.manual_seed(0)
        _, student = _nets(device)
        source = StoredSource(SyntheticSet(tmp_path / "set"), crop_padding=4, device_budget_mb=64, seed=0)
        distiller = Distiller.from_options(None, student, source, device=device, num_classes=10,
                                           input_size=(3, 32, 32), batch_size=64, progress=False, cuda_graphs=graphs)
        assert (distiller._captured is not None) == graphs
        losses[graphs] = torch.stack([distiller._update()[0].clone() for _ in range(8)])
        if graphs:
            assert distiller._captured.graph is not None
    assert torch.allclose(losses[True], losses[False], rtol=1e-2), losses


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])
def test_a_captured_step_trains_a_torchvision_student_as_an_eager_one(tmp_path, name):
    """Students beyond the zoo in the CUDA-graph student step: the graphed steps compute what eager steps compute,
    and the loss falls (a captured step whose gradients never reached the weights would leave it flat)."""
    from datafree.distill.sources import StoredSource
    from datafree.export import SyntheticSet, synthesize_dataset
    from datafree.models.sources import build_network
    from datafree.synthesizers import NoiseSynthesizer
    from datafree.teachers import ClassifierInfo, Teacher

    device = torch.device("cuda")
    torch.manual_seed(0)
    teacher = freeze(Normalized(build_network("torchvision", name="resnet18", num_classes=10, in_channels=3)[0],
                                (0.5,) * 3, (0.25,) * 3).to(device))
    info = ClassifierInfo("torchvision:resnet18", 10, (3, 64, 64), (0.5,) * 3, (0.25,) * 3)
    synthesize_dataset(Teacher(teacher, info), NoiseSynthesizer(batch_size=64), tmp_path / "set", 128, progress=False,
                       class_counts="as_drawn", log=lambda _: None)
    losses = {}
    for graphs in (False, True):
        torch.manual_seed(0)
        net = build_network("torchvision", name=name, num_classes=10, in_channels=3)[0]
        student = Normalized(net, (0.5,) * 3, (0.25,) * 3).to(device).to(memory_format=torch.channels_last)
        source = StoredSource(SyntheticSet(tmp_path / "set"), crop_padding=0, device_budget_mb=64, seed=0)
        distiller = Distiller.from_options(None, student, source, device=device, num_classes=10,
                                           input_size=(3, 64, 64), batch_size=64, lr=0.05, progress=False,
                                           cuda_graphs=graphs)
        losses[graphs] = torch.stack([distiller._update()[0].clone() for _ in range(30)])
    assert losses[False][-5:].mean() < 0.8 * losses[False][:5].mean(), losses[False]
    # bf16 steps drift apart slowly: the first ten are compared, the fall is that of the whole run
    assert torch.allclose(losses[True][:10], losses[False][:10], rtol=2e-2, atol=1e-3), losses
    assert losses[True][-5:].mean() < 0.8 * losses[True][:5].mean(), losses[True]


def test_a_student_too_large_for_the_device_is_refused_before_any_work():
    from datafree.distill.preflight import check_student_fits
    from datafree.errors import DatafreeError

    device = torch.device("cuda")
    teacher, student = _nets(device)
    free = torch.cuda.mem_get_info(device)[0]
    batch = int(free // (3 * 224 * 224 * 2)) * 4  # more than the free memory holds in input images alone
    with pytest.raises(DatafreeError, match="does not fit on the .* GiB device at trainer.batch_size"):
        check_student_fits(teacher, student, batch_size=batch, input_size=(3, 224, 224), device=device, amp=True)
    check_student_fits(teacher, student, batch_size=64, input_size=(3, 32, 32), device=device, amp=True)


def test_evaluation_counts_the_predicted_classes_with_one_host_sync():
    """The collapse counts (classes predicted, non-finite logits, how far the logits move) stay on the device: the
    evaluation's one sync is the read-back at its end, as before they were added."""
    import warnings

    from datafree.evaluate import evaluate

    device = torch.device("cuda")
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10)).to(device)
    batches = [(torch.rand(500, 3, 8, 8, device=device), torch.randint(10, (500,), device=device)) for _ in range(4)]
    evaluate(model, batches, device, num_classes=10)  # warm-up: kernels load, autocast caches
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            result = evaluate(model, batches, device, num_classes=10)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) == 1, [str(w.message) for w in syncs]
    assert 0.1 <= result["top_class_share"] <= 1 and result["nonfinite_share"] == 0 and result["logit_range"] > 0


def test_the_running_average_moves_inside_the_captured_student_step():
    """trainer.ema_decay: the average is updated in the graphed student step, without a host sync, as eagerly."""
    averages = {}
    for graphs in (False, True):
        distiller = _noise_distiller(graphs, ema_decay=0.9)
        student = distiller.student
        start = [p.detach().clone() for p in student.parameters()]
        distiller.source.new_round()
        for _ in range(4):  # warm-up and capture (cuDNN autotuning may sync)
            distiller._update()
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            for _ in range(3):
                distiller._update()
        finally:
            torch.cuda.set_sync_debug_mode("default")
        assert (distiller._captured is not None and distiller._captured.graph is not None) == graphs
        assert distiller.average.updates.item() == 7
        average = [p.detach().clone() for p in distiller.average.module.parameters()]
        weights = list(student.parameters())
        assert any(not torch.equal(a, s) for a, s in zip(average, start))  # it moved ...
        assert any(not torch.equal(a, w) for a, w in zip(average, weights))  # ... and lags the weights
        averages[graphs] = average
    for eager, graphed in zip(averages[False], averages[True]):
        assert torch.allclose(eager, graphed, rtol=2e-2, atol=1e-3)


def test_the_average_reestimated_between_captured_steps_moves_on_as_eagerly():
    """trainer.ema_bn_batches: the average's statistics, re-estimated in place between graphed student steps (the
    graph holds those tensors), are what the next steps move on from, as in an eager run."""
    from datafree.ops.hooks import batchnorm_layers

    states = {}
    for graphs in (False, True):
        distiller = _noise_distiller(graphs, ema_decay=0.9, ema_bn_batches=4)
        distiller.source.new_round()
        for _ in range(4):
            distiller._update()
        layer = batchnorm_layers(distiller.average.module)[0]
        averaged = layer.running_mean.clone()
        distiller._reestimate_average(4)
        assert not torch.equal(layer.running_mean, averaged) and layer.momentum is not None
        for _ in range(3):
            distiller._update()
        assert (distiller._captured is not None and distiller._captured.graph is not None) == graphs
        states[graphs] = {k: v.clone() for k, v in distiller.average.module.state_dict().items()}
    for name, eager in states[False].items():
        graphed = states[True][name]
        assert torch.allclose(eager.float(), graphed.float(), rtol=2e-2, atol=1e-3), name


def test_a_growing_pool_is_read_by_the_captured_student_step_after_each_growth(monkeypatch):
    """The replay pool grows as it fills (a new storage tensor each time): the captured student step is captured
    again after each growth, and reads the grown pool, so a graphed run trains as an eager one, and moves the average
    of its weights and BatchNorm statistics as an eager one does (the captured step holds the average's update)."""
    from datafree.distill import pool

    monkeypatch.setattr(pool, "FIRST_ALLOCATION", 64)  # 64 images a round: grown at rounds 2, 3 and 5
    students = {}
    for graphs in (False, True):
        distiller = _noise_distiller(graphs, lr=0.01, ema_decay=0.9, ema_bn_batches=0)
        student = distiller.student
        for _ in range(6):
            distiller.source.new_round()
            for _ in range(5):  # after a growth: three eager warm-up steps, the capture, a replay
                distiller._update()
        torch.cuda.synchronize()
        assert distiller.source.pool.allocations == 4 and len(distiller.source.pool) == 384
        if graphs:
            assert distiller._captured.graph is not None and distiller._source_buffers == distiller.source.buffers
        students[graphs] = [t.detach().clone().float() for t in (*student.state_dict().values(),
                                                                     *distiller.average.module.state_dict().values())]
        assert distiller.average.updates.item() == 30
    for eager, graphed in zip(students[False], students[True]):
        assert torch.allclose(eager, graphed, rtol=2e-2, atol=1e-3)
