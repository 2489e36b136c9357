"""The terms beside the KD loss in the trainer: off costs nothing, each falls alone, they compose, the discriminator
plays its game, nothing reaches the teacher, losses reach TensorBoard and summary.csv."""
import csv

import pytest
import torch
from torch import nn

from nets import TinyBNNet, calibrated_bn_net
from datafree.distill.losses import KDLoss
from datafree.distill.objectives import Objectives
from datafree.distill.trainer import Distiller
from datafree.errors import DatafreeError
from datafree.synthesizers import Augment, NoiseSynthesizer
from datafree.teachers import Ensemble, freeze
from datafree.utils.logging import RunLogger

CPU = torch.device("cpu")
SIZE = (3, 8, 8)
LAYERS = {"teacher_layers": ["features.2", "features.5"], "student_layers": ["features.2", "features.5"]}
# Every term of the trainer, as a recipe gives it (weights chosen to put the terms on a similar scale).
ALONE = {
    "attention": {"attention": {"weight": 100.0, **LAYERS, "pair_weights": [1.0, 0.5]}},
    "hint": {"hint": {"weight": 1.0, **LAYERS, "pair_weights": [0.5, 1.0]}},
    "similarity": {"similarity": {"weight": 100.0, **LAYERS}},
    "rkd_distance": {"rkd": {"distance_weight": 25.0, "embedding": "penultimate"}},
    "rkd_angle": {"rkd": {"angle_weight": 50.0, "embedding": "logits"}},
    # every=1000: the discriminator updates once, then holds still while the student learns to fool it.
    "adversarial": {"discriminator": {"weight": 1.0, "hidden": [16], "every": 1000}},
}


class Recorder(RunLogger):
    """Keeps the TensorBoard scalars in memory (and writes summary.csv where enabled)."""

    def __init__(self, out_dir=".", enabled=False):
        super().__init__(out_dir, tensorboard=False, enabled=enabled)
        self.rows: list[dict] = []

    def scalars(self, step, values):
        self.rows.append(dict(values))


def _distiller(teacher=None, kd_weight=1.0, lr=0.05, rounds=4, logger=None, **kw):
    torch.manual_seed(1)
    teacher = teacher if teacher is not None else freeze(calibrated_bn_net())
    torch.manual_seed(0)
    options = dict(device=CPU, num_classes=4, input_size=SIZE, rounds=rounds, student_steps=10, batch_size=32, lr=lr,
                   amp=False, progress=False, log_every=10, eval_every=100, augment=Augment(jitter=0, flip=False),
                   loss=KDLoss(temperature=1.0, kd_weight=kd_weight), logger=logger or Recorder())
    options.update(kw)
    return Distiller.from_options(teacher, TinyBNNet(), NoiseSynthesizer(batch_size=32), **options)


def test_terms_that_are_off_cost_nothing(monkeypatch):
    """Null nodes and zero weights (the recipes' defaults) build nothing, hook nothing and run no extra pass."""
    off = {"attention": {"weight": 0.0, "teacher_layers": [], "student_layers": []}, "hint": None,
           "similarity": {"weight": 0, **LAYERS}, "rkd": {"distance_weight": 0.0, "angle_weight": 0.0},
           "discriminator": {"weight": 0.0, "hidden": [256, 256]}}
    hooks = []
    for name in ("register_forward_hook", "register_forward_pre_hook"):
        original = getattr(nn.Module, name)
        monkeypatch.setattr(nn.Module, name, lambda self, *a, _original=original, **k: hooks.append(self) or _original(self, *a, **k))
    teacher = freeze(calibrated_bn_net())
    forwards = []
    teacher.register_forward_pre_hook(lambda module, inputs: forwards.append(1))
    hooks.clear()
    d = _distiller(teacher=teacher, rounds=1, **off)
    assert not forwards  # no probe pass
    assert d.objectives.names == () and d.objectives.adversary is None and d.logged == ("loss",)
    assert d.objectives.capture_blockers() == [] and not d.objectives.needs_teacher_features
    d.fit()
    assert hooks == [] and len(forwards) == 10  # one teacher pass per student step, nothing else


@pytest.mark.parametrize("name", sorted(ALONE))
def test_each_term_falls_when_trained_alone(name):
    recorder = Recorder()
    d = _distiller(kd_weight=0.0, logger=recorder, **ALONE[name])
    d.fit()
    values = [row[f"train/loss_{name}"] for row in recorder.rows]
    assert len(values) == 4 and values[0] > 0
    assert values[-1] < 0.8 * values[0], values
    # The KD term was off: the total is this term alone.
    assert [row["train/loss_kd"] for row in recorder.rows] == [0.0] * 4
    assert [row["train/kd_loss"] for row in recorder.rows] == pytest.approx(values, rel=1e-5)


def test_discriminator_accuracy_rises_with_the_student_frozen_and_falls_when_it_trains():
    disc = {"weight": 1.0, "hidden": [32], "lr": 1e-3}
    frozen_log = Recorder()
    frozen = _distiller(logger=frozen_log, discriminator=disc)
    frozen.settings.lr = 0.0  # the schedule's peak (recipes refuse 0): the student does not move
    before = {k: v.clone() for k, v in frozen.student.named_parameters()}
    frozen.fit()
    assert all(torch.equal(v, before[k]) for k, v in frozen.student.named_parameters())
    accuracy = [row["train/discriminator_accuracy"] for row in frozen_log.rows]
    assert accuracy[0] < 0.7 and accuracy[-1] > 0.9, accuracy

    # The same student and discriminator; now the student trains against it (the adversarial term alone).
    playing_log = Recorder()
    playing = _distiller(kd_weight=0.0, lr=0.05, rounds=6, logger=playing_log, discriminator=disc)
    playing.student.load_state_dict(frozen.student.state_dict())
    playing.objectives.adversary.load_state_dict(frozen.objectives.adversary.state_dict())
    playing.fit()
    fooled = [row["train/discriminator_accuracy"] for row in playing_log.rows]
    assert sum(fooled[-3:]) / 3 < accuracy[-1] - 0.3, (accuracy, fooled)


def test_terms_compose_without_touching_the_teacher(tmp_path):
    """All terms at once; a teacher whose weights could take gradients gets none and does not move."""
    torch.manual_seed(1)
    teacher = calibrated_bn_net()  # not frozen: requires_grad stays on
    weights = {k: v.clone() for k, v in teacher.state_dict().items()}
    terms = {**ALONE["attention"], **ALONE["hint"], **ALONE["similarity"],
             "rkd": {"distance_weight": 25.0, "angle_weight": 50.0},
             "discriminator": {"weight": 0.5, "embedding": "penultimate", "hidden": [16], "steps": 2}}
    logger = RunLogger(tmp_path, tensorboard=True)
    d = _distiller(teacher=teacher, rounds=2, eval_every=1, logger=logger,
                   test_batches=[(torch.rand(16, *SIZE), torch.randint(4, (16,)))], **terms)
    assert d.objectives.names == ("attention", "hint", "similarity", "rkd_distance", "rkd_angle", "adversarial")
    d.fit()
    logger.close()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(v, weights[k]) for k, v in teacher.state_dict().items())
    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert len(rows) == 2
    for column in ("loss_kd", "loss_attention", "loss_hint", "loss_similarity", "loss_rkd_distance", "loss_rkd_angle",
                   "loss_adversarial", "discriminator_loss", "discriminator_accuracy", "discriminator_skipped"):
        assert rows[-1][column] != "", column
    assert 0.0 <= float(rows[-1]["discriminator_accuracy"]) <= 1.0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/discriminator_loss", "train/discriminator_accuracy", "train/loss_adversarial",
            "train/loss_rkd_angle", "train/kd_loss"} <= tags


def test_capture_blockers_name_the_hooked_terms():
    teacher, student = freeze(calibrated_bn_net()), TinyBNNet()
    logits_only = Objectives(teacher, student, num_classes=4, input_size=SIZE, device=CPU, max_nonfinite=20,
                             rkd={"distance_weight": 1.0, "embedding": "logits"}, discriminator={"weight": 1.0})
    assert logits_only.capture_blockers() == [] and not logits_only.needs_teacher_features
    hooked = Objectives(teacher, student, num_classes=4, input_size=SIZE, device=CPU, max_nonfinite=20, similarity={"weight": 1.0, **LAYERS},
                        discriminator={"weight": 1.0, "embedding": "penultimate"})
    assert hooked.describe("kd") == ("student loss: kd + similarity + adversarial; penultimate features: the input of "
                                     "the teacher's head, the student's head")
    assert hooked.capture_blockers() == ["feature terms (similarity) are on", "penultimate features "
                                         "(trainer.rkd.embedding / trainer.discriminator.embedding) are read by hooks"]
    assert hooked.needs_teacher_features


def test_bad_term_settings_are_refused_before_work():
    teacher, student = freeze(calibrated_bn_net()), TinyBNNet()

    def build(**terms):
        return Objectives(teacher, student, num_classes=4, input_size=SIZE, device=CPU, max_nonfinite=20, **terms)

    with pytest.raises(DatafreeError, match=r"trainer.rkd has unknown key\(s\) \['distance'\]: it takes distance_weight"):
        build(rkd={"distance": 25.0})
    with pytest.raises(DatafreeError, match="trainer.rkd.embedding says what the term compares: .* not 'pooled'"):
        build(rkd={"angle_weight": 1.0, "embedding": "pooled"})
    with pytest.raises(DatafreeError, match="trainer.discriminator.weight must be a number >= 0"):
        build(discriminator={"weight": -1.0})
    with pytest.raises(DatafreeError, match=r"trainer.hint.pair_weights gives one number >= 0 per layer pair: 2 pair"):
        build(hint={"weight": 1.0, **LAYERS, "pair_weights": [1.0]})
    with pytest.raises(DatafreeError, match=r"trainer.similarity has unknown key\(s\) \['layers'\]"):
        build(similarity={"weight": 1.0, "layers": ["features.2"]})
    ensemble = freeze(Ensemble([calibrated_bn_net(), calibrated_bn_net()]))
    with pytest.raises(DatafreeError, match="ensemble teacher has no single penultimate layer"):
        Objectives(ensemble, student, num_classes=4, input_size=SIZE, device=CPU, max_nonfinite=20, rkd={"distance_weight": 1.0})
    no_linear = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(DatafreeError, match="has none: set trainer.rkd.embedding / trainer.discriminator.embedding=logits"):
        Objectives(teacher, no_linear, num_classes=4, input_size=SIZE, device=CPU, max_nonfinite=20, discriminator={"weight": 1.0,
                                                                                                   "embedding": "penultimate"})


def test_evaluation_without_a_test_set_then_a_log_line():
    """No test batches (data=none): an evaluation row without accuracy must not break the next progress update."""
    d = _distiller(rounds=2, eval_every=1, log_every=5, logger=Recorder(), test_batches=None)
    assert d.fit().student_accuracy is None


def test_recipe_keys_turn_terms_on():
    """One override per key on the shipped recipes' all-off defaults (recipes/trainer/terms/default.yaml)."""
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate

    from datafree.config_checks import check_config

    overrides = ["trainer.discriminator.weight=0.5", "trainer.discriminator.hidden=[8]", "trainer.discriminator.every=2",
                 "trainer.rkd.angle_weight=50", "trainer.rkd.embedding=logits", "trainer.similarity.weight=3000",
                 "trainer.similarity.teacher_layers=[features.5]", "trainer.similarity.student_layers=[features.5]"]
    with initialize_config_module("datafree.recipes", version_base="1.3"):
        cfg = compose("distill", overrides)
        bad = compose("distill", ["trainer.rkd.embedding=pooled"])
    check_config(cfg)
    with pytest.raises(DatafreeError, match="trainer.rkd.embedding must be 'penultimate' or 'logits', got 'pooled'"):
        check_config(bad)
    d = instantiate(cfg.trainer)(teacher=freeze(calibrated_bn_net()), student=TinyBNNet(),
                                 source=NoiseSynthesizer(batch_size=8), device=CPU, num_classes=4, input_size=SIZE,
                                 amp=False, progress=False)
    assert d.objectives.names == ("similarity", "rkd_angle", "adversarial")
    assert d.objectives.adversary.every == 2 and d.objectives.adversary.net[0].out_features == 8
