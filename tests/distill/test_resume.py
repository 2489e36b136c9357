"""Full-state checkpoints of the Distiller: bitwise resume after SIGTERM, fallback, NaN skips, OOM."""
import os
import signal

import pytest
import torch

from nets import TinyBNNet, calibrated_bn_net
from datafree.distill.losses import KDLoss
from datafree.distill.trainer import Distiller
from datafree.errors import DatafreeError
from datafree.synthesizers import DeepInversion, FastSynthesizer, GeneratorSynthesizer, NoiseSynthesizer
from datafree.teachers import freeze
from datafree.utils.logging import RunLogger
from datafree.utils.run_state import LAST, PREV, StateFiles
from datafree.utils.signals import Interrupted

SYNTHS = {
    "deepinversion": lambda: DeepInversion(batch_size=8, iterations=2, amp=False),
    "generator": lambda: GeneratorSynthesizer(latent_dim=8, batch_size=8, g_steps=1, amp=False),
    # The memory bank (the pool, replay 1.0 in the fast recipe) and the BN-statistics momentum travel in the state.
    "fast": lambda: FastSynthesizer(batch_size=8, g_steps=2, latent_dim=8, base_width=4, amp=False),
    "generator_clone": lambda: GeneratorSynthesizer(latent_dim=8, batch_size=8, g_steps=2, amp=False, clone_per_batch=True,
                                                    meta_lr=0.5, optimize_latent=True),
}


def _make(state_dir, synth="deepinversion", resume=False, config=None, **kw):
    torch.manual_seed(1)
    teacher = freeze(calibrated_bn_net())
    torch.manual_seed(0)  # the same student initialisation in every process
    options = dict(device=torch.device("cpu"), num_classes=4, input_size=(3, 8, 8), rounds=4, student_steps=3,
                   batch_size=8, lr=0.05, eval_every=2, log_every=2, amp=False, replay=0.5, pool_capacity=20,
                   test_batches=[(torch.rand(16, 3, 8, 8), torch.randint(4, (16,)))],
                   logger=RunLogger(state_dir, tensorboard=False, enabled=False), progress=False,
                   state=StateFiles(state_dir, config=config or {"lr": 0.05}, resume=resume, notice=lambda m: None))
    options.update(kw)
    synthesizer = options.pop("synthesizer", None) or SYNTHS[synth]()
    return Distiller.from_options(teacher, TinyBNNet(), synthesizer, **options)


def _kill_at(distiller, at_step):
    """SIGTERM to this process in the middle of student step ``at_step`` (1-based): a real signal, a real handler."""
    step_fn, calls = distiller._step, [0]

    def step(*batch):
        calls[0] += 1
        if calls[0] == at_step:
            os.kill(os.getpid(), signal.SIGTERM)
        return step_fn(*batch)

    distiller._step = step


def _weights(distiller):
    return {k: v.clone() for k, v in distiller.student.state_dict().items()}


@pytest.mark.parametrize("synth", sorted(SYNTHS))
def test_sigterm_and_resume_is_bitwise_identical(tmp_path, synth):
    reference = _make(tmp_path / "ref", synth)
    reference.fit()
    expected = _weights(reference)
    run_dir = tmp_path / "run"
    # Interrupted twice, inside a round and at its last step, then resumed to the end.
    done = 0
    for at_step in (2, 6):
        d = _make(run_dir, synth, resume=done > 0)
        _kill_at(d, at_step - done)
        with pytest.raises(Interrupted, match=rf"SIGTERM after student step {at_step} .*resume=true") as info:
            d.fit()
        assert info.value.exit_code == 128 + signal.SIGTERM
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone after the loop
        done = at_step
    result = _make(run_dir, synth, resume=True).fit()
    assert result.student_steps == 12 and result.rounds == 4
    d = _make(run_dir, synth, resume=True)
    d.fit()  # resuming a finished run changes nothing
    for name, value in _weights(d).items():
        assert torch.equal(value, expected[name]), name
    blob = torch.load(run_dir / LAST, weights_only=True)
    assert blob["config"] == {"lr": 0.05} and blob["step"] == 12 and "rng" in blob and "pool" in blob


def test_hint_adapters_resume_bitwise(tmp_path):
    """Hint adapters train with the student but live outside it: the state must carry them."""
    hint = {"weight": 1.0, "teacher_layers": ["features.2"], "student_layers": ["features.5"]}  # 8 vs 16 channels
    reference = _make(tmp_path / "ref", hint=hint)
    reference.fit()
    run_dir = tmp_path / "run"
    d = _make(run_dir, hint=hint)
    _kill_at(d, 5)
    with pytest.raises(Interrupted):
        d.fit()
    resumed = _make(run_dir, resume=True, hint=hint)
    resumed.fit()
    assert torch.equal(resumed.objectives.features[0].adapters[0].weight, reference.objectives.features[0].adapters[0].weight)
    for name, value in _weights(resumed).items():
        assert torch.equal(value, _weights(reference)[name]), name


@pytest.mark.parametrize("embedding", ["logits", "penultimate"])
def test_discriminator_resumes_bitwise(tmp_path, embedding):
    """The discriminator, its optimiser, its round counter and the relation terms come back exactly."""
    terms = dict(discriminator={"weight": 0.5, "embedding": embedding, "hidden": [8], "steps": 2, "every": 2},
                 rkd={"distance_weight": 1.0, "angle_weight": 1.0, "embedding": embedding}, optimizer="adam", lr=1e-3)
    reference = _make(tmp_path / "ref", **terms)
    reference.fit()
    run_dir = tmp_path / "run"
    d = _make(run_dir, **terms)
    _kill_at(d, 5)  # inside round 2, between the discriminator's turns (every 2)
    with pytest.raises(Interrupted):
        d.fit()
    saved = torch.load(run_dir / LAST, weights_only=True)["discriminator"]
    assert saved["rounds"].item() == 5 and saved["optimizer"]["state"]
    resumed = _make(run_dir, resume=True, **terms)
    resumed.fit()
    for name, value in _weights(resumed).items():
        assert torch.equal(value, _weights(reference)[name]), name
    ours, theirs = resumed.objectives.adversary.state_dict(), reference.objectives.adversary.state_dict()
    assert all(torch.equal(v, theirs["net"][k]) for k, v in ours["net"].items())
    for p, q in zip(resumed.objectives.adversary.optimizer.state.values(),
                    reference.objectives.adversary.optimizer.state.values()):
        assert all(torch.equal(p[k], q[k]) for k in p)
    assert torch.equal(ours["rounds"], theirs["rounds"]) and ours["rounds"].item() == 12


def test_ctrl_c_saves_and_exits_with_130(tmp_path):
    d = _make(tmp_path)
    step_fn = d._step

    def step(*batch):
        os.kill(os.getpid(), signal.SIGINT)
        return step_fn(*batch)

    d._step = step
    with pytest.raises(Interrupted, match=r"SIGINT after student step 1 \(round 1\): full state saved to") as info:
        d.fit()
    assert info.value.exit_code == 130 and torch.load(tmp_path / LAST, weights_only=True)["step"] == 1


def test_periodic_checkpoints_keep_last_prev_and_best(tmp_path):
    d = _make(tmp_path, checkpoint_every=3)
    d.fit()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["state_best.pt", "state_last.pt", "state_prev.pt"]
    assert torch.load(tmp_path / "state_best.pt", weights_only=True)["best"] >= 0


def test_truncated_last_state_falls_back_to_previous(tmp_path):
    reference = _make(tmp_path / "ref", checkpoint_every=3)
    reference.fit()
    d = _make(tmp_path, checkpoint_every=3)
    _kill_at(d, 7)
    with pytest.raises(Interrupted):
        d.fit()
    data = (tmp_path / LAST).read_bytes()
    (tmp_path / LAST).write_bytes(data[: len(data) // 2])
    notices = []
    state = StateFiles(tmp_path, config={"lr": 0.05}, resume=True, notice=notices.append).load()
    assert state["step"] == 6  # the periodic checkpoint before the interrupted one
    assert notices == [f"datafree: notice: state_last.pt in {tmp_path} cannot be read (damaged): resuming from state_prev.pt"]
    # The run resumed from the previous state ends where the uninterrupted one did.
    resumed = _make(tmp_path, resume=True, checkpoint_every=3)
    resumed.outputs.state.notice = notices.append
    resumed.fit()
    assert len(notices) == 2
    expected = _weights(reference)
    assert all(torch.equal(v, expected[k]) for k, v in _weights(resumed).items())
    data = (tmp_path / LAST).read_bytes()
    (tmp_path / LAST).write_bytes(data[: len(data) // 2])
    (tmp_path / PREV).write_bytes(b"not a checkpoint")
    # No state left to read: starting afresh would overwrite the run, so the resume is refused.
    with pytest.raises(DatafreeError, match="state_last.pt and state_prev.pt cannot be read \\(damaged\\), so nothing was changed"):
        StateFiles(tmp_path, resume=True, notice=notices.append).load()


def test_resume_with_a_different_config_lists_the_differences(tmp_path):
    d = _make(tmp_path, config={"trainer": {"lr": 0.05, "rounds": 4, "log_every": 2}, "seed": 0})
    _kill_at(d, 2)
    with pytest.raises(Interrupted):
        d.fit()
    changed = {"trainer": {"lr": 0.1, "rounds": 8, "log_every": 1}, "seed": 1}
    with pytest.raises(DatafreeError, match=r"differs .* in seed: 0 -> 1; trainer.lr: 0.05 -> 0.1\. Give the same"):
        _make(tmp_path, resume=True, config=changed).fit()
    # Run length and logging may change.
    longer = {"trainer": {"lr": 0.05, "rounds": 8, "log_every": 1}, "seed": 0}
    assert _make(tmp_path, resume=True, config=longer, rounds=8).fit().rounds == 8


class _NaNOnSteps(KDLoss):
    def __init__(self, steps):
        super().__init__(temperature=1.0)
        self.steps, self.calls = set(steps), 0

    def forward(self, student_logits, teacher_logits):
        self.calls += 1
        loss = super().forward(student_logits, teacher_logits)
        return loss * float("nan") if self.calls in self.steps else loss


def test_planted_nan_is_skipped_and_counted(tmp_path):
    d = _make(tmp_path, state=None, loss=_NaNOnSteps({2, 5, 6}), max_nonfinite=3)
    before = {k: v.clone() for k, v in d.student.state_dict().items()}
    # The weights do not move on a skipped step: compare around step 2.
    step_fn, seen = d._step, []

    def step(*batch):
        out = step_fn(*batch)
        seen.append({k: v.clone() for k, v in d.student.named_parameters()})
        return out

    d._step = step
    result = d.fit()
    assert result.skipped_steps == 3 and result.student_steps == 12
    assert all(torch.equal(seen[0][k], seen[1][k]) for k in seen[0])  # step 2 skipped
    assert not all(torch.equal(seen[1][k], seen[2][k]) for k in seen[1])  # step 3 applied
    assert all(v.isfinite().all() for v in d.student.state_dict().values() if v.is_floating_point())
    assert any(not torch.equal(before[k], v) for k, v in d.student.state_dict().items())


def test_repeated_nan_stops_with_the_term_and_the_last_good_checkpoint(tmp_path):
    d = _make(tmp_path, loss=_NaNOnSteps(range(5, 100)), max_nonfinite=3, checkpoint_every=2)
    with pytest.raises(DatafreeError, match=r"4 student steps in a row .* by student step 8 .*kd \(4 steps\)"
                                            rf".*last good checkpoint is {tmp_path / LAST}"):
        d.fit()
    # The checkpoint at step 6 fell inside the non-finite run and was not written over the good one of step 4.
    assert torch.load(tmp_path / LAST, weights_only=True)["step"] == 4


def test_out_of_memory_names_the_batch_size_or_halves_it(tmp_path):
    class Hungry(NoiseSynthesizer):
        def synthesize(self):
            if self.batch_size > 4:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
            return super().synthesize()

    with pytest.raises(DatafreeError, match=r"synthesizer.batch_size=16: lower it .*synthesizer.batch_size=8.*"
                                            r"trainer.halve_synthesis_on_oom=true"):
        _make(tmp_path, state=None, synthesizer=Hungry(batch_size=16)).fit()
    d = _make(tmp_path, state=None, halve_synthesis_on_oom=True, synthesizer=Hungry(batch_size=16))
    assert d.fit().images_synthesized == 4 * 4 and d.source.synthesizer.batch_size == 4

    d = _make(tmp_path, state=None)

    def no_memory(*batch):
        raise torch.OutOfMemoryError("CUDA out of memory")

    d._step = no_memory
    with pytest.raises(DatafreeError, match=r"student step with trainer.batch_size=8: lower it \(e.g. trainer.batch_size=4\)"):
        d.fit()


def test_out_of_memory_in_evaluation_names_the_eval_batch_size():
    from datafree.evaluate import evaluate

    class Hungry(torch.nn.Module):
        def forward(self, x):
            raise torch.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(DatafreeError, match=r"evaluating batches of 16 images: lower data.eval_batch_size \(e.g. "
                                            r"data.eval_batch_size=8\)"):
        evaluate(Hungry(), [(torch.rand(16, 3, 8, 8), torch.zeros(16, dtype=torch.long))], torch.device("cpu"))


def test_out_of_memory_in_a_distill_evaluation_names_the_replay_pool_as_well(tmp_path):
    """On a GPU the pool is often the largest allocation, and runs started together size auto pools from the same
    free memory: the message names it beside the evaluation batch (the device is faked: the text is the test)."""
    d = _make(tmp_path, state=None, pool_capacity=1000)
    assert d._pool_hint() == ""  # a pool in host memory crowds no GPU
    d.source.pool.device = torch.device("cuda")
    hint = d._pool_hint()
    assert hint.startswith(", or trainer.pool_capacity (the replay pool holds 0 images in 0.0 GiB and grows to 1,000;")
    assert "runs started together on one GPU crowd each other)" in hint
