import csv
import time

import pytest
import torch

from nets import TinyBNNet, calibrated_bn_net
from datafree.distill.losses import KDLoss
from datafree.distill.trainer import Distiller
from datafree.errors import DatafreeError
from datafree.recipe_nodes import recipe_defaults
from datafree.synthesizers import Batch, DeepInversion, NoiseSynthesizer, Synthesizer
from datafree.teachers import ClassifierInfo, freeze
from datafree.utils.logging import RunLogger


def _distiller(tmp_path, synth, teacher=None, student=None, **kw):
    teacher = freeze(teacher or calibrated_bn_net())
    test = [(torch.rand(32, 3, 8, 8), torch.randint(4, (32,))) for _ in range(2)]
    info = ClassifierInfo(arch="tiny", num_classes=4, input_size=(3, 8, 8), mean=(0.5,) * 3, std=(0.25,) * 3)
    options = dict(device=torch.device("cpu"), num_classes=4, input_size=(3, 8, 8), rounds=4, student_steps=3,
                   batch_size=16, lr=0.05, eval_every=2, log_every=2, amp=False, test_batches=test,
                   logger=RunLogger(tmp_path, tensorboard=True), progress=False)
    options.update(kw)
    return Distiller.from_options(teacher, student or TinyBNNet(), synth, **options)


def test_fit_lowers_kd_loss_and_writes_outputs(tmp_path):
    from datafree.teachers import Normalized  # noqa: F401  (student.pt readable as a classifier)

    info = ClassifierInfo(arch="tiny", num_classes=4, input_size=(3, 8, 8), mean=(0.5,) * 3, std=(0.25,) * 3)
    d = _distiller(tmp_path, NoiseSynthesizer(batch_size=16), rounds=6, student_steps=10, log_every=5,
                   student_info=info, checkpoint_path=tmp_path / "student.pt", grid_path=tmp_path / "samples.png")
    probe = torch.rand(64, 3, 8, 8)
    before = KDLoss()(d.student.eval()(probe), d.teacher(probe)).item()
    result = d.fit()
    after = KDLoss()(d.student.eval()(probe), d.teacher(probe)).item()
    d.outputs.logger.close()
    assert after < before
    assert result.rounds == 6 and result.student_steps == 60 and result.images_synthesized == 96
    assert 0 <= result.student_accuracy <= 1 and 0 <= result.agreement <= 1
    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert [int(r["round"]) for r in rows] == [2, 4, 6]
    assert (tmp_path / "samples.png").stat().st_size > 0
    assert list((tmp_path / "tensorboard").iterdir())
    blob = torch.load(tmp_path / "student.pt", weights_only=True)
    assert blob["arch"] == "tiny" and blob["test_accuracy"] == pytest.approx(result.student_accuracy)


def test_deepinversion_through_trainer_fills_pool(tmp_path):
    synth = DeepInversion(batch_size=8, iterations=3, amp=False)
    d = _distiller(tmp_path, synth, rounds=3, student_steps=2, pool_capacity=20)
    result = d.fit()
    assert len(d.source.pool) == 20 and result.images_synthesized == 24
    assert (result.pool_capacity, result.pool_filled, result.pool_bytes) == (20, 20, 20 * 3 * 8 * 8)


def test_a_pool_that_grows_trains_the_student_a_pool_allocated_at_once_trains(tmp_path, monkeypatch):
    """The replay pool grows as it fills (datafree.distill.pool): the images drawn, and so the student, are those
    of a pool allocated at once; each growth counts as a new buffer, so a captured student step is captured again."""
    from datafree.distill import pool

    students, buffers = [], []
    for first in (4, 10_000):  # 8 images a round into a pool of 100: grown 4 -> 8 -> 16 -> 32 -> 64 -> 100
        monkeypatch.setattr(pool, "FIRST_ALLOCATION", first)
        torch.manual_seed(0)
        d = _distiller(tmp_path / str(first), NoiseSynthesizer(batch_size=8), rounds=16, student_steps=2,
                       pool_capacity=100)
        seen = []
        new_round = d.source.new_round
        monkeypatch.setattr(d.source, "new_round", lambda: (new_round(), seen.append(d.source.buffers)))
        d.fit()
        students.append(d.student.state_dict())
        buffers.append(seen)
    assert all(torch.equal(a, b) for a, b in zip(students[0].values(), students[1].values()))
    assert buffers[1] == [2] * 16  # the fresh batch and the pool, once each
    assert buffers[0] == [3, 4, 5, 5, 6, 6, 6, 6] + [7] * 8  # and one more at each growth, the last at 72 images


def test_the_closing_line_says_how_much_of_the_peak_memory_the_pool_took(tmp_path, monkeypatch):
    """The replay pool grows as it fills, up to trainer.pool_capacity (auto: a quarter of the free GPU memory): the
    peak a run reports says how much of it the pool took and how far it may grow, so that nobody sizes a longer run
    by a short run's peak."""
    from datafree.jobs import _device_name

    result = _distiller(tmp_path, NoiseSynthesizer(batch_size=8), rounds=3, student_steps=1, pool_capacity=10000).fit()
    assert (result.pool_filled, result.pool_bytes) == (24, 4096 * 3 * 8 * 8)  # its first allocation, not 10,000
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "NVIDIA H200")
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device: 41.1 * 2**30)
    gpu = torch.device("cuda", 0)
    assert _device_name(gpu, result) == ("NVIDIA H200 (peak memory 41.1 GiB, 768 kB of it the replay pool, holding 24 "
                                         "images of the 10,000 trainer.pool_capacity lets it grow to)")
    result.pool_bytes, result.pool_capacity = 34.7 * 2**30, 12_140_981
    assert "41.1 GiB, 34.7 GiB of it the replay pool, holding 24 images of the 12,140,981" in _device_name(gpu, result)
    assert _device_name(gpu) == "NVIDIA H200 (peak memory 41.1 GiB)" and _device_name(torch.device("cpu"), result) == "CPU"


def test_time_budget_stops_early(tmp_path):
    d = _distiller(tmp_path, NoiseSynthesizer(batch_size=8), rounds=10_000, student_steps=2, time_budget_s=0.5)
    result = d.fit()
    assert result.stopped_by == "time budget" and result.rounds < 10_000


class _NaNSynth(Synthesizer):
    def synthesize(self):
        return Batch(images=torch.full((8, *self.input_size), float("nan")))


def test_nonfinite_loss_stops_with_step_and_keeps_last_good(tmp_path):
    info = ClassifierInfo(arch="tiny", num_classes=4, input_size=(3, 8, 8), mean=(0.5,) * 3, std=(0.25,) * 3)

    class LateNaN(_NaNSynth):
        calls = 0

        def synthesize(self):
            self.calls += 1
            if self.calls <= 2:
                return Batch(images=torch.rand(8, *self.input_size))
            return super().synthesize()

    d = _distiller(tmp_path, LateNaN(), rounds=6, student_steps=2, log_every=2, eval_every=1, replay=0.0,
                   student_info=info, checkpoint_path=tmp_path / "student.pt", max_nonfinite=3)
    # NaN from step 5 on: skipped, and at the read-back of step 8 four in a row stop the run.
    with pytest.raises(DatafreeError, match=r"4 student steps in a row.*by student step 8.*kd \(4 steps\).*"
                                            r"last good checkpoint is .*student.pt"):
        d.fit()
    assert (tmp_path / "student.pt").exists()


def test_bad_trainer_settings_are_refused(tmp_path):
    with pytest.raises(DatafreeError, match="replay"):
        _distiller(tmp_path, NoiseSynthesizer(), replay=1.5)
    with pytest.raises(DatafreeError, match="optimizer"):
        _distiller(tmp_path, NoiseSynthesizer(), optimizer="lion")


def test_flat_options_reach_the_settings_and_typos_are_named(tmp_path):
    d = _distiller(tmp_path, NoiseSynthesizer(), rounds=7, replay=0.25, momentum=0.5, grid_path=tmp_path / "g.png",
                   checkpoint_every=3)
    assert (d.settings.rounds, d.source.replay, d.settings.checkpoint_every) == (7, 0.25, 3)
    assert d.settings.student_steps == 3  # given
    assert d.settings.max_nonfinite == recipe_defaults("trainer/default")["max_nonfinite"]  # not given
    assert d.optimizer.param_groups[0]["momentum"] == 0.5 and d.outputs.grid_path == tmp_path / "g.png"
    with pytest.raises(DatafreeError, match=r"unknown trainer option\(s\) \['lr_rate'\]: the options are .*lr,"):
        _distiller(tmp_path, NoiseSynthesizer(), lr_rate=0.1)


def test_review_fixes_generator_anneals_no_unused_pool_and_clipping():
    """The generator's learning rate follows the student's to 0; replay 0 keeps no pool; clipping bounds the update."""
    from datafree.distill.trainer import Distiller
    from datafree.synthesizers import GeneratorSynthesizer
    from nets import TinyBNNet

    torch.manual_seed(0)
    synth = GeneratorSynthesizer(latent_dim=8, batch_size=8, amp=False)
    d = Distiller.from_options(TinyBNNet().eval(), TinyBNNet(), synth, device=torch.device("cpu"), num_classes=4,
                               input_size=(3, 8, 8), rounds=3, student_steps=2, batch_size=8, replay=0.0,
                               pool_capacity=1000, amp=False, progress=False, clip_grad_norm=1e-3)
    assert d.source.pool.capacity == 0
    d.fit()
    assert len(d.source.pool) == 0 and synth.optimizer.param_groups[0]["lr"] < 0.2 * synth.lr  # annealed with the student
    d._set_lr(0.0, 0)
    assert synth.optimizer.param_groups[0]["lr"] == synth.lr
    norms, step = [], d.guard.step

    def record(optimizer, loss, terms):  # the gradient the optimiser is given
        norms.append(torch.sqrt(sum(p.grad.pow(2).sum() for p in d._params if p.grad is not None)).item())
        return step(optimizer, loss, terms)

    d.guard.step = record
    d._step(torch.rand(8, 3, 8, 8), None)
    assert norms and norms[0] == pytest.approx(1e-3, rel=1e-3)


def test_the_first_round_says_how_long_it_took_and_when_the_log_speaks_next(tmp_path, caplog):
    with caplog.at_level("INFO", logger="datafree"):
        _distiller(tmp_path / "a", NoiseSynthesizer(batch_size=8), rounds=3, eval_every=2, time_budget_s=600).fit()
        _distiller(tmp_path / "b", NoiseSynthesizer(batch_size=8), rounds=3, eval_every=1).fit()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("round 1 took")]
    assert len(lines) == 1  # with an evaluation every round, the evaluation's own line comes at once
    assert lines[0].endswith("(with its warm-up); the next evaluation comes after round 2 (trainer.eval_every=2), or "
                             "when trainer.time_budget_s=600 ends")
    assert "fit" not in lines[0]  # a pace that includes the warm-up would misjudge the budget


def test_a_first_round_longer_than_the_budget_says_so_and_what_to_lower(tmp_path, caplog):
    class Slow(NoiseSynthesizer):  # a round of a large pair on the CPU: minutes against a budget of seconds
        def synthesize(self):
            time.sleep(0.3)
            return super().synthesize()

    with caplog.at_level("INFO", logger="datafree"):
        result = _distiller(tmp_path, Slow(batch_size=8), rounds=10, eval_every=5, time_budget_s=0.1).fit()
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("round 1 took")]
    assert "more than trainer.time_budget_s=0.1, which is read between rounds: the run ends with it" in line
    assert "lower synthesizer.batch_size" in line and result.rounds == 1


def test_the_second_round_gives_the_pace_and_what_it_means_for_the_run(tmp_path, caplog):
    """The estimate waits for the second round: the first one's warm-up (CUDA graphs, cuDNN's search) took about 15
    times the run's average round on a GPU. Each kind of run says what bounds it: the budget, the rounds, or neither yet."""
    def second(run, **settings):
        caplog.clear()
        with caplog.at_level("INFO", logger="datafree"):
            _distiller(tmp_path / run, NoiseSynthesizer(batch_size=8), eval_every=10, **settings).fit()
        return [r.getMessage() for r in caplog.records if r.getMessage().startswith("round 2 took")]

    (budget,) = second("budget", rounds=10**6, time_budget_s=2)  # the budget ends it
    fit = int(budget.split("about ")[1].split(" rounds fit")[0].replace(",", ""))
    assert 2 <= fit < 10**6 and budget.endswith("rounds fit in trainer.time_budget_s=2 at this pace")
    (rounds,) = second("rounds", rounds=3, time_budget_s=600)  # its rounds end it first
    assert "the 3 rounds (trainer.rounds) end before trainer.time_budget_s=600, in about" in rounds
    (neither,) = second("neither", rounds=5)
    assert "the 3 rounds left take about" in neither
    (last,) = second("last", rounds=3)
    assert "the last round takes about" in last
    assert second("one", rounds=2) == []  # nothing left to estimate


class _Answers(torch.nn.Module):
    """A trainable student whose evaluation is fixed from outside: ``offset`` is added to its logits in eval mode."""

    def __init__(self, offset):
        super().__init__()
        self.net = TinyBNNet()
        self.register_buffer("offset", torch.tensor(offset))

    def forward(self, x):
        out = self.net(x)
        return out if self.training else out + self.offset


class _Dead(_Answers):
    """A student whose evaluation is the same for every image, as a network whose last ReLUs all died gives."""

    def forward(self, x):
        out = self.net(x)
        return out if self.training else out * 0 + self.offset


@pytest.mark.parametrize("student, offset, warning", [
    (_Answers, [0.0, 0.0, 1e4, 0.0], "the student gives class 'c2' (2) to 100.0% of the test images: it has not"),
    (_Answers, [0.0, float("nan"), 0.0, 0.0], "the student's logits are not finite for 100.0% of the test images"),
    (_Dead, [0.0, 0.0, 1.0, 0.0], "the student gives class 'c2' (2) to 100.0% of the test images: it has not "
                                  "learned to tell the classes apart on real images yet. For now its logits barely "
                                  "move between images (by at most 0, the teacher's by "),
])
def test_a_student_whose_accuracy_is_a_constant_answer_is_named_in_the_log(tmp_path, caplog, student, offset, warning):
    info = ClassifierInfo(arch="tiny", num_classes=4, input_size=(3, 8, 8), mean=(0.5,) * 3, std=(0.25,) * 3,
                          classes=["c0", "c1", "c2", "c3"])
    with caplog.at_level("INFO", logger="datafree"):
        _distiller(tmp_path, NoiseSynthesizer(batch_size=8), student=student(offset), rounds=2, eval_every=2,
                   student_info=info).fit()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith(warning)
    row = next(csv.DictReader((tmp_path / "summary.csv").open()))
    assert float(row["top_class_share"]) == 1.0
    assert (float(row["logit_range"]) == 0) == (student is _Dead)


def test_a_student_whose_logits_stay_flat_is_called_dead_once_they_have_not_grown_for_a_while(tmp_path, caplog,
                                                                                              monkeypatch):
    """Evaluations at steps 6 and 12 (3 steps a round, every 2 rounds): flat at the first (the generic warning, with
    the watch started), still flat 6 steps later (dead)."""
    monkeypatch.setattr(Distiller, "DEAD_AFTER_STEPS", 6)
    with caplog.at_level("INFO", logger="datafree"):
        _distiller(tmp_path, NoiseSynthesizer(batch_size=8), student=_Dead([0.0, 0.0, 1.0, 0.0]), rounds=4,
                   eval_every=2).fit()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2 and "For now its logits barely move" in warnings[0]
    assert warnings[1].startswith("the student gives class 2 to 100.0% of the test images, and its logits barely "
                                  "move between images (by at most 0, the teacher's by ")
    assert "as at step 6, without doubling since: its last activations died" in warnings[1]
    assert "trainer.warmup_steps=200 (now 0)" in warnings[1]


def test_the_dead_student_watch_goes_on_across_a_resume(tmp_path, caplog, monkeypatch):
    """The run above, stopped after its first evaluation and resumed for two more rounds: the watch started at step 6
    travels in the saved state, so step 12 still says dead (a fresh watch would only start there)."""
    from datafree.utils.run_state import StateFiles

    monkeypatch.setattr(Distiller, "DEAD_AFTER_STEPS", 6)

    def run(rounds, resume):
        state = StateFiles(tmp_path, config={"lr": 0.05}, resume=resume, notice=lambda m: None)
        _distiller(tmp_path, NoiseSynthesizer(batch_size=8), student=_Dead([0.0, 0.0, 1.0, 0.0]), rounds=rounds,
                   eval_every=2, state=state).fit()

    with caplog.at_level("INFO", logger="datafree"):
        run(2, resume=False)
        run(4, resume=True)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "For now its logits barely move" in warnings[0]
    assert "as at step 6, without doubling since: its last activations died" in warnings[-1]


@pytest.mark.parametrize("ranges, dead_at", [
    # The torchvision MobileNetV3-Large at 128 px (docs/benchmarks.md): flat at first, then waking; it learned.
    ([(200, 0.0039), (400, 0.0586), (600, 0.367)], None),
    ([(500, 0.17), (1000, 0.16)], 1000),   # flat and not growing over 500 steps: dead
    ([(500, 0.17), (600, 0.16), (700, 0.3)], 700),  # not doubled over 200 steps
    ([(500, 0.17), (600, 0.16)], None),    # too soon to tell
    ([(200, 0.17), (300, 0.5), (400, 0.6)], None),  # waking (tripled) restarts the watch at step 300
])
def test_a_flat_student_is_dead_only_if_its_logits_do_not_double_within_the_steps_allowed(tmp_path, ranges, dead_at):
    d = _distiller(tmp_path, NoiseSynthesizer(batch_size=8), rounds=2, eval_every=2)
    said = [step for step, spread in ranges
            if d._stayed_flat({"logit_range": spread, "reference_logit_range": 31.2, "top_class_share": 1.0}, step)]
    assert said == ([dead_at] if dead_at else [])
    assert not d._stayed_flat({"logit_range": 30.0, "reference_logit_range": 31.2, "top_class_share": 0.2}, 2000)
    assert d._flat_since is None  # a live evaluation ends the watch


def test_a_student_that_tells_classes_apart_draws_no_warning(tmp_path, caplog):
    from datafree.evaluate import evaluate

    images = torch.rand(40, 3, 8, 8)
    labels = torch.arange(40) % 4
    guess = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 64, 4))
    result = evaluate(guess, [(images, labels)], torch.device("cpu"), amp=False, num_classes=4)
    assert result["nonfinite_share"] == 0 and 0.25 <= result["top_class_share"] < 1 and result["logit_range"] > 0.01
    assert 0 <= result["top_class"] < 4
    with caplog.at_level("INFO", logger="datafree"):
        _distiller(tmp_path, NoiseSynthesizer(batch_size=8), rounds=2, eval_every=2)._warn_if_collapsed(
            {**result, "top_class_share": 0.5})
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_one_answer_to_a_test_split_of_one_class_is_no_collapse(tmp_path, caplog):
    """A student that gives every image the class they all are is right, not collapsed: no warning; the same answer
    to images of four classes is one."""
    from datafree.evaluate import answers_one_class, evaluate

    one_class = [(torch.rand(40, 3, 8, 8), torch.full((40,), 2))]
    student = _Answers([0.0, 0.0, 1e4, 0.0])
    result = evaluate(student, one_class, torch.device("cpu"), amp=False, num_classes=4)
    assert result["top_class_share"] == 1.0 and result["top_class_label_share"] == 1.0 and not answers_one_class(result)
    four = evaluate(student, [(torch.rand(40, 3, 8, 8), torch.arange(40) % 4)], torch.device("cpu"), amp=False,
                    num_classes=4)
    assert four["top_class_label_share"] == 0.25 and answers_one_class(four)
    with caplog.at_level("INFO", logger="datafree"):
        _distiller(tmp_path, NoiseSynthesizer(batch_size=8), rounds=2, eval_every=2)._warn_if_collapsed(
            {**result, "logit_range": 1e4, "reference_logit_range": 5.0})
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_a_run_meant_to_sit_at_chance_draws_no_collapse_warning(tmp_path, caplog):
    """The noise baseline (warn_collapse=False) is at chance by design: its evaluations say nothing more."""
    with caplog.at_level("INFO", logger="datafree"):
        _distiller(tmp_path, NoiseSynthesizer(batch_size=8), student=_Answers([0.0, 0.0, 1e4, 0.0]), rounds=2,
                   eval_every=2, warn_collapse=False).fit()
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    assert float(next(csv.DictReader((tmp_path / "summary.csv").open()))["top_class_share"]) == 1.0


def test_the_student_learning_rate_warms_up_over_its_first_steps_then_follows_the_cosine(tmp_path):
    """trainer.warmup_steps=4: the student's rate is the plain schedule's times 1/4, 2/4, 3/4, then the schedule."""
    rates = {}
    for warmup in (0, 4):
        d = _distiller(tmp_path / str(warmup), NoiseSynthesizer(batch_size=8), rounds=3, student_steps=3,
                       eval_every=3, warmup_steps=warmup)
        seen, step = [], d.guard.step

        def record(optimizer, loss, terms, seen=seen, step=step):
            seen.append(float(optimizer.param_groups[0]["lr"]))
            return step(optimizer, loss, terms)

        d.guard.step = record
        d.fit()
        rates[warmup] = seen
    plain, warm = rates[0], rates[4]
    assert len(plain) == len(warm) == 9 and plain[0] == pytest.approx(0.05)
    assert warm == pytest.approx([rate * min(1.0, (i + 1) / 4) for i, rate in enumerate(plain)])
    assert warm[:4] == sorted(warm[:4]) and warm[4:] == pytest.approx(plain[4:])


@pytest.mark.parametrize("logit_range, teacher_range, share, dead", [
    (0.169, 22.35, 1.0, True),    # the torchvision ResNet-18 found dead at 128 px, on real test images (docs/benchmarks.md)
    (2.0, 22.35, 1.0, False),     # moves on a tenth of the teacher's scale: alive, whatever class it favours
    (0.169, 22.35, 0.5, False),   # tells classes apart: not dead, however small its logits
    (0.169, None, 1.0, False),    # no teacher to compare with: only logits that do not move at all
    (0.0, None, 1.0, True),
    (float("nan"), 22.35, 1.0, False),  # no finite logit: the non-finite warning speaks instead
])
def test_a_dead_student_is_one_class_with_logits_that_barely_move_against_the_teachers(logit_range, teacher_range,
                                                                                         share, dead):
    result = {"logit_range": logit_range, "top_class_share": share,
              **({"reference_logit_range": teacher_range} if teacher_range else {})}
    assert Distiller.is_dead(result) is dead


def test_the_progress_bar_of_a_budgeted_run_has_no_total(tmp_path, monkeypatch):
    import datafree.distill.trainer as trainer

    totals, real = [], trainer.tqdm

    def recording(*args, **kwargs):
        totals.append(kwargs.get("total"))
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "tqdm", recording)
    _distiller(tmp_path / "a", NoiseSynthesizer(batch_size=8), rounds=10**6, time_budget_s=0.5).fit()
    _distiller(tmp_path / "b", NoiseSynthesizer(batch_size=8), rounds=2).fit()
    assert totals == [None, 6]  # the budget's run was "0% of 3,000,000 steps" with an estimate of years


@pytest.mark.parametrize("decay_norm_and_bias", [True, False])
def test_decay_norm_and_bias_false_decays_the_filters_and_spares_biases_and_norms(tmp_path, decay_norm_and_bias):
    """trainer.decay_norm_and_bias=false (timm's default): one step on zero gradients moves only what is decayed."""
    torch.manual_seed(0)
    d = _distiller(tmp_path, NoiseSynthesizer(batch_size=16), weight_decay=0.1, decay_norm_and_bias=decay_norm_and_bias)
    params = list(d.student.parameters())
    assert {id(p) for g in d.optimizer.param_groups for p in g["params"]} == {id(p) for p in params}
    assert [g["weight_decay"] for g in d.optimizer.param_groups] == ([0.1] if decay_norm_and_bias else [0.1, 0.0])
    assert any(p.ndim <= 1 for p in params) and any(p.ndim > 1 for p in params)
    for p in params:
        with torch.no_grad():
            p.add_(0.5)  # a BatchNorm's shift starts at 0, which decay leaves at 0
        p.grad = torch.zeros_like(p)
    before = [p.detach().clone() for p in params]
    d.optimizer.step()
    for p, old in zip(params, before):
        moved = not torch.equal(p, old)
        assert moved == (decay_norm_and_bias or p.ndim > 1), (tuple(p.shape), moved)


def test_decay_norm_and_bias_is_checked_like_every_trainer_key(tmp_path):
    with pytest.raises(DatafreeError, match=r"trainer.decay_norm_and_bias.*true or false"):
        _distiller(tmp_path, NoiseSynthesizer(), decay_norm_and_bias="no")
