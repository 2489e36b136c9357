"""Each way a teacher can be wrong stops before any work, with the fix in the message."""
import logging

import pytest
import torch
from torch import nn

from nets import GreyWideNet, GroupNormNet, LikeTransformers, TinyBNNet, calibrated_bn_net
from datafree.api import checked_student  # what the jobs call: its errors in the CLI's words
from datafree.distill.trainer import Distiller
from datafree.errors import DatafreeError
from datafree.synthesizers import Augment, DeepInversion, GeneratorSynthesizer
from datafree.ops.hooks import BatchNormStatistics, batchnorm_layers
from datafree.teachers import DataHint, check_agreement, load_teacher

CPU = torch.device("cpu")


def _saved(tmp_path, net, name="w.pt"):
    torch.save(net.state_dict(), tmp_path / name)
    return str(tmp_path / name)


def test_model_that_does_not_run_on_the_declared_shape(tmp_path):
    path = _saved(tmp_path, GreyWideNet())
    with pytest.raises(DatafreeError, match=r"does not run on inputs of shape \(4, 1, 16, 16\).*teacher.input_size"):
        load_teacher("module", model=GreyWideNet(), checkpoint=path, input_size=[1, 16, 16])


def test_class_count_disagreements():
    with pytest.raises(DatafreeError, match="teacher has 10 classes but the data set has 100"):
        check_agreement(10, (3, 32, 32), data_classes=100)
    with pytest.raises(DatafreeError, match="student is set to 5 classes.*student.num_classes=10"):
        check_agreement(10, (3, 32, 32), student_classes=5)
    with pytest.raises(DatafreeError, match="test images are 3x16x16.*teacher takes 3x32x32"):
        check_agreement(10, (3, 32, 32), data_size=(3, 16, 16))
    # A non-square teacher, and test images of its size resized by data.image_size=64: the line said 'use test images
    # of 56x72 pixels' to a user whose images were 56x72; it names the setting that reads them at their own size.
    with pytest.raises(DatafreeError, match=r"test images are 1x64x64 .* teacher takes 1x56x72: use test images of "
                                            r"56x72 pixels \(height x width\), read at their own size with "
                                            r"data.image_size=auto \(a number resizes them to a square\)"):
        check_agreement(3, (1, 56, 72), data_size=(1, 64, 64))


def test_declared_classes_must_match_the_outputs(tmp_path):
    path = _saved(tmp_path, TinyBNNet(4))
    with pytest.raises(DatafreeError, match="returns 4 logits per image but teacher.num_classes=10"):
        load_teacher("module", model=TinyBNNet(4), checkpoint=path, num_classes=10)


def test_student_that_gives_other_classes_or_cannot_run(tmp_path):
    teacher = load_teacher("module", model=TinyBNNet(4), checkpoint=_saved(tmp_path, TinyBNNet(4)), input_size=[3, 8, 8])
    # the student must give the teacher's classes: the fix is to build it so, not to declare its 7
    with pytest.raises(DatafreeError, match=r"student returns 7 logits per image but the teacher has 4 classes: build it "
                                            r"with 4 outputs \(e.g. num_classes: 4 next to student.model._target_\)"):
        checked_student(TinyBNNet(7), teacher.info, CPU)
    with pytest.raises(DatafreeError, match=r"a transformers classifier: \+student.model.num_labels=4 "
                                            r"\+student.model.ignore_mismatched_sizes=true"):
        checked_student(LikeTransformers(7), teacher.info, CPU)
    with pytest.raises(DatafreeError, match="student does not run on inputs"):
        checked_student(GreyWideNet(4), teacher.info, CPU)
    with pytest.raises(DatafreeError, match="student is set to 3 classes"):
        checked_student("microcnn", teacher.info, CPU, num_classes=3)


def test_missing_and_unexpected_keys_list_the_first_few(tmp_path):
    state = calibrated_bn_net().state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["head.bias"]
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(DatafreeError, match=r"1 missing keys \(head.bias\); 1 unexpected keys \(extra.weight\)") as info:
        load_teacher("module", model=TinyBNNet(4), checkpoint=str(tmp_path / "w.pt"))
    assert ("This run builds the teacher nets.TinyBNNet: make teacher.model build the network the weights were saved "
            "from, with the same constructor arguments.") in str(info.value)


class _Exploding(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = TinyBNNet(4)

    def forward(self, x):
        return self.net(x) * float("inf")


def test_nan_or_inf_on_the_probe_batch():
    with pytest.raises(DatafreeError, match="NaN or Inf on random images.*teacher.mean / teacher.std"):
        load_teacher("module", model=_Exploding(), input_size=[3, 8, 8])


def test_every_batchnorm_kind_counts_and_untracked_layers_are_skipped(caplog):
    net = nn.Sequential(nn.BatchNorm1d(3), nn.BatchNorm2d(3), nn.BatchNorm3d(3), nn.SyncBatchNorm(3),
                        nn.BatchNorm2d(3, track_running_stats=False))
    assert len(batchnorm_layers(net)) == 4
    teacher = load_teacher("module", model=_ProbeNet(), input_size=[3, 8, 8])
    synth = DeepInversion(batch_size=4, iterations=1, amp=False)
    with caplog.at_level(logging.INFO, logger="datafree"):
        synth.bind(teacher.model, TinyBNNet(2), 2, (3, 8, 8), CPU)
    assert "without running statistics are skipped" in caplog.text and "untracked" in caplog.text
    assert len(BatchNormStatistics(teacher.model).layers) == 2  # bn1d on the pooled vector, bn3d on a 5-D view
    batch = synth.synthesize()
    assert batch.images.shape == (4, 3, 8, 8) and torch.isfinite(synth.last_losses["bn"])


class _ProbeNet(nn.Module):
    """BatchNorm1d, 3d and an untracked 2d layer in one teacher."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.untracked = nn.BatchNorm2d(4, track_running_stats=False)
        self.bn3d = nn.BatchNorm3d(1)
        self.bn1d = nn.BatchNorm1d(4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        h = self.untracked(self.conv(x))
        h = self.bn3d(h.unsqueeze(1)).squeeze(1)
        return self.head(self.bn1d(h.mean((2, 3))))


def test_groupnorm_teacher_refused_by_deepinversion_with_the_fix(tmp_path):
    teacher = load_teacher("module", model=GroupNormNet(4), checkpoint=_saved(tmp_path, GroupNormNet(4)), input_size=[3, 8, 8])
    with pytest.raises(DatafreeError, match=r"DeepInversion .* cannot be used: .*GroupNorm, LayerNorm.*synthesizer=dfad"):
        DeepInversion(batch_size=4, iterations=1).bind(teacher.model, TinyBNNet(4), 4, (3, 8, 8), CPU)


def test_groupnorm_teacher_distils_with_an_adversarial_synthesizer(tmp_path):
    torch.manual_seed(0)
    teacher = load_teacher("module", model=GroupNormNet(4), checkpoint=_saved(tmp_path, GroupNormNet(4)), input_size=[3, 8, 8])
    student, _ = checked_student(TinyBNNet(4), teacher.info, CPU)
    before = [p.detach().clone() for p in student.parameters()]
    synth = GeneratorSynthesizer(latent_dim=8, batch_size=8, amp=False)  # DFAD: L1 disagreement, no BN prior
    result = Distiller.from_options(teacher.model, student, synth, device=CPU, num_classes=4, input_size=(3, 8, 8), rounds=3,
                                    student_steps=2, batch_size=8, replay=0.0, amp=False, progress=False,
                                    augment=Augment(jitter=0, flip=False)).fit()
    assert result.student_steps == 6 and torch.isfinite(synth.last_losses["adv"])
    assert any(not torch.equal(a, b) for a, b in zip(before, student.parameters()))


def test_grey_non_square_teacher_end_to_end(tmp_path):
    torch.manual_seed(0)
    path = _saved(tmp_path, GreyWideNet())
    # Nothing declared: the data set's shape is used, the classes come from the probe.
    teacher = load_teacher("module", model=GreyWideNet(), checkpoint=path, data_hint=DataHint(1, 12, 20))
    assert teacher.info.input_size == (1, 12, 20) and teacher.info.num_classes == 3
    assert teacher.info.mean == (0.0,) and any("normalisation not given" in n for n in teacher.notes)
    # No data either: the probe finds no common square size, and says what to set.
    with pytest.raises(DatafreeError, match="ran on none of the common sizes.*teacher.input_size"):
        load_teacher("module", model=GreyWideNet(), checkpoint=path)
    for synth in (DeepInversion(batch_size=6, iterations=3, amp=False),
                  GeneratorSynthesizer(latent_dim=8, batch_size=6, amp=False)):  # the generator makes 12x20 images
        student, _ = checked_student(GreyWideNet(), teacher.info, CPU)
        result = Distiller.from_options(teacher.model, student, synth, device=CPU, num_classes=3, input_size=teacher.info.input_size,
                                        rounds=2, student_steps=1, batch_size=6, amp=False, progress=False,
                                        augment=Augment(jitter=1, flip=True)).fit()
        assert result.images_synthesized == 12
        assert synth.sample(2) is None or synth.sample(2).shape == (2, 1, 12, 20)


def test_probing_finds_a_square_size_and_says_so(tmp_path):
    teacher = load_teacher("module", model=TinyBNNet(4))
    assert teacher.info.input_size == (3, 32, 32)
    assert any("probed the network" in n for n in teacher.notes) and any("no teacher.checkpoint" in n for n in teacher.notes)


def test_a_teacher_with_one_output_is_refused_with_the_two_logit_wrapper():
    one = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 1))  # a binary classifier read through a sigmoid
    with pytest.raises(DatafreeError, match=r"returns one logit per image.*torch.cat\(\[torch.zeros_like\(z\), z\], 1\)"):
        load_teacher("module", model=one, input_size=[3, 8, 8])
