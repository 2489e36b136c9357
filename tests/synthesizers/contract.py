"""What every synthesizer must do, as one test class that each synthesizer's tests inherit (kornia's habit).

A subclass gives :meth:`make` (small, fast settings), the settings it must refuse (``bad_settings``)
and whether its default settings need BatchNorm statistics; the checks here run on each:

* smoke: bound to a small teacher, a round returns a :class:`~datafree.synthesizers.Batch` of pixels;
* an error inside a round leaves no hook on the teacher and the networks in the modes they had;
* its state survives ``torch.load(weights_only=True)`` and, loaded into a new instance, continues identically;
* bad settings fail in the constructor with a message naming them;
* a teacher it cannot serve is refused at ``bind`` (and by ``check_teacher``, before any student exists);
* where it matches BatchNorm statistics, ``bn_distance`` (raw or relative) reaches the statistics it measures,
  and any other value is refused in the constructor.
"""
import copy

import pytest
import torch

from nets import TinyBNNet
from datafree.errors import DatafreeError
from datafree.models import create_model
from datafree.ops.hooks import BatchNormStatistics
from datafree.synthesizers import Batch, Synthesizer

CPU = torch.device("cpu")
SIZE = (3, 8, 8)


def bind(synth: Synthesizer, teacher, student=None) -> Synthesizer:
    synth.bind(teacher, student if student is not None else TinyBNNet(), 4, SIZE, CPU)
    return synth


def hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


class SynthesizerContract:
    uses_teacher = True  # a round runs the teacher (every method but noise)
    needs_batchnorm = True  # its default settings match BatchNorm statistics
    bad_settings: list[tuple[dict, str]] = []  # (constructor overrides, what the message must say)

    def make(self, **overrides) -> Synthesizer:
        raise NotImplementedError

    def test_smoke(self, bn_teacher):
        synth = bind(self.make(), bn_teacher)
        batch = synth.synthesize()
        assert isinstance(batch, Batch) and batch.images.shape[1:] == SIZE and len(batch) >= 1
        assert not batch.images.requires_grad and batch.images.isfinite().all()
        assert 0 <= float(batch.images.min()) and float(batch.images.max()) <= 1
        assert batch.images.is_contiguous()  # NCHW: the layout the CPU's networks take (a generator's is its own)

    def test_an_error_in_a_round_leaves_no_hooks_and_the_modes_as_they_were(self, bn_teacher):
        if not self.uses_teacher:
            pytest.skip("draws without the teacher: nothing to hook")
        student = TinyBNNet().train()
        synth = bind(self.make(), bn_teacher, student)

        def explode(*args, **kwargs):
            raise RuntimeError("teacher exploded")

        bn_teacher.forward = explode
        with pytest.raises(RuntimeError, match="exploded"):
            synth.synthesize()
        assert hook_count(bn_teacher) == 0 and hook_count(student) == 0
        assert student.training and not bn_teacher.training

    def test_state_survives_a_weights_only_file_and_continues_identically(self, bn_teacher, tmp_path):
        torch.manual_seed(0)
        student = TinyBNNet()  # adversarial terms read it: the same network for both
        first = bind(self.make(), bn_teacher, student)
        first.synthesize()
        torch.save(copy.deepcopy(first.state_dict()), tmp_path / "state.pt")  # live tensors move on: a copy
        rng = torch.get_rng_state()
        expected = first.synthesize().images
        torch.manual_seed(5)
        again = self.make()
        again.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))  # before bind: kept until bound
        bind(again, bn_teacher, student)
        torch.set_rng_state(rng)
        assert torch.equal(again.synthesize().images, expected)

    def test_the_batchnorm_distance_reaches_the_statistics_it_measures(self, bn_teacher, monkeypatch):
        if not self.needs_batchnorm:
            pytest.skip("no BatchNorm prior")
        with pytest.raises(DatafreeError, match="synthesizer.bn_distance must be raw .* or relative"):
            self.make(bn_distance="kl")
        measured = []  # the distance of every BatchNormStatistics whose hooks are in place during the round
        original = BatchNormStatistics.__enter__

        def spy(stats):
            measured.append(stats.distance)
            return original(stats)

        monkeypatch.setattr(BatchNormStatistics, "__enter__", spy)
        for distance in ("raw", "relative"):
            torch.manual_seed(0)
            batch = bind(self.make(bn_distance=distance), bn_teacher).synthesize()
            assert batch.images.isfinite().all()
            assert measured and set(measured) == {distance}
            measured.clear()

    def test_bad_settings_fail_in_the_constructor_naming_them(self):
        for overrides, match in self.bad_settings:
            with pytest.raises(DatafreeError, match=match):
                self.make(**overrides)

    def test_a_teacher_without_batchnorm_is_refused_before_any_work(self):
        if not self.needs_batchnorm:
            pytest.skip("its default settings need no BatchNorm statistics")
        teacher = create_model("nobn_cnn", num_classes=4)
        with pytest.raises(DatafreeError, match="no BatchNorm"):
            self.make().check_teacher(teacher)
        with pytest.raises(DatafreeError, match="no BatchNorm"):
            bind(self.make(), teacher)
