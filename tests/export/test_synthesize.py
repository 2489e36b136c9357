"""synthesize_dataset: what it writes, the class histogram, refusals, damage, a full disk."""
import errno
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from fakes import AimingSynthesizer, RecordingNoise, red_teacher
from datafree.errors import DatafreeError
from datafree.export import SyntheticSet, synthesize_dataset
from datafree.export import shards as shards_module, writer as writer_module
from datafree.export.imagefolder import read_image_folder
from datafree.ops.pixels import dequantise, quantise
from datafree.export.shards import read_shard


def _write(out, n=40, **options):
    options.setdefault("progress", False)
    options.setdefault("shard_size", 16)
    teacher = options.pop("teacher", None) or red_teacher()
    synthesizer = options.pop("synthesizer", None) or AimingSynthesizer(batch_size=12)
    return synthesize_dataset(teacher, synthesizer, out, n, log=lambda _: None, **options), synthesizer


def test_shards_and_imagefolder_hold_exactly_what_was_generated(tmp_path):
    teacher = red_teacher()
    result, synth = _write(tmp_path / "set", n=45, teacher=teacher, synthesizer=RecordingNoise(batch_size=16),
                           class_counts="as_drawn", format="both")
    assert result.count == 45 and result.shards == 3
    made = torch.cat(synth.made)[:45]  # as_drawn keeps every sample in the order drawn
    pixels = quantise(made)
    with torch.no_grad():
        logits = teacher.model(dequantise(pixels)).half()
    stored = SyntheticSet(tmp_path / "set").load()
    assert torch.equal(stored.images, pixels)
    assert torch.equal(stored.logits, logits)
    assert torch.equal(stored.labels, logits.float().argmax(1))
    assert stored.indices.tolist() == list(range(45))
    (folder,) = read_image_folder(tmp_path / "set", (3, 8, 8), 4)
    for name in ("images", "logits", "labels", "indices"):
        assert torch.equal(getattr(folder, name), getattr(stored, name)), name
    first = tmp_path / "set" / "imagefolder" / f"c{int(stored.labels[7])}" / "000007.png"
    assert np.array_equal(np.asarray(Image.open(first)), pixels[7].permute(1, 2, 0).numpy())
    assert np.array_equal(np.load(tmp_path / "set" / "imagefolder" / "logits.npy"), logits.numpy())
    assert SyntheticSet(tmp_path / "set").verify() == []
    assert not (tmp_path / "set" / ".resume").exists()


def test_imagefolder_only_keeps_no_shards_and_reads_back(tmp_path):
    _write(tmp_path / "set", n=20, format="imagefolder")
    synthetic = SyntheticSet(tmp_path / "set")
    assert synthetic.storage == "imagefolder" and not list((tmp_path / "set").glob("shard_*"))
    assert synthetic.verify() == [] and len(synthetic.load()) == 20


def test_class_histogram_is_filled_by_the_teacher_label(tmp_path):
    result, _ = _write(tmp_path / "balanced", n=42)
    assert result.class_counts == [11, 11, 10, 10]
    result, _ = _write(tmp_path / "skewed", n=30, class_counts={"c0": 20, "c3": 10})
    assert result.class_counts == [20, 0, 0, 10]
    # Aimed at the classes still short, so few images are drawn beyond what is kept.
    assert result.drawn <= 36
    stored = SyntheticSet(tmp_path / "skewed").load()
    assert torch.equal(stored.labels, stored.logits.float().argmax(1))


def test_bad_input_writes_nothing(tmp_path):
    out = tmp_path / "set"
    for options, needle in [(dict(n=0), "n must be an int >= 1"), (dict(class_counts={"c9": 40}), "unknown classes"),
                            (dict(class_counts={"c0": 10}), "add up to 10 but n=40"), (dict(draw="copy"), "draw="),
                            (dict(format="zip"), "format="), (dict(classes=["a", "b"]), "names for a teacher with 4")]:
        with pytest.raises(DatafreeError, match=needle):
            _write(out, **options)
        assert not out.exists()


def test_folders_that_hold_something_else_are_left_alone(tmp_path):
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"not mine")
    with pytest.raises(DatafreeError, match="already holds other files .*holiday.jpg"):
        _write(foreign)
    assert [p.name for p in foreign.iterdir()] == ["holiday.jpg"]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(DatafreeError, match="is a file"):
        _write(a_file)
    _write(tmp_path / "set", n=20)
    before = {p.name: p.read_bytes() for p in (tmp_path / "set").iterdir() if p.is_file()}
    with pytest.raises(DatafreeError, match="already holds a different synthetic data set .*n: 20 -> 30"):
        _write(tmp_path / "set", n=30)
    with pytest.raises(DatafreeError, match="teacher sha256"):
        _write(tmp_path / "set", n=20, teacher=_other_teacher())
    assert {p.name: p.read_bytes() for p in (tmp_path / "set").iterdir() if p.is_file()} == before
    result, _ = _write(tmp_path / "set", n=20)  # the same command again: nothing to do
    assert result.already_complete and result.samples_this_run == 0


def _other_teacher():
    teacher = red_teacher()
    with torch.no_grad():
        teacher.model.model.head.bias += 1  # other weights, same behaviour: another teacher all the same
    return teacher


def _kill_after(monkeypatch, commits: int, error: BaseException):
    """Make the writer fail on its (commits + 1)-th shard, as a kill or a full disk would."""
    real = writer_module.write_shard
    calls = {"n": 0}

    def failing(path, samples):
        calls["n"] += 1
        if calls["n"] > commits:
            raise error
        return real(path, samples)

    monkeypatch.setattr(writer_module, "write_shard", failing)


def test_a_full_disk_stops_with_a_clear_message_and_valid_shards(tmp_path, monkeypatch):
    _kill_after(monkeypatch, 2, OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(DatafreeError, match=r"is full .*2 complete shards \(32 of 60 samples\) are kept and valid"):
        _write(tmp_path / "set", n=60)
    manifest = json.loads((tmp_path / "set" / "manifest.json").read_text())
    assert manifest["count"] == 32 and not manifest["complete"]
    assert SyntheticSet(tmp_path / "set").verify() == []
    with pytest.raises(DatafreeError, match=r"is incomplete \(32 of 60 samples written\)"):
        SyntheticSet(tmp_path / "set").require("distil from it")  # what distill data=synthetic and audit check
    monkeypatch.undo()
    result, _ = _write(tmp_path / "set", n=60)  # space freed: the same command finishes the set
    assert result.count == 60 and SyntheticSet(tmp_path / "set").verify() == []


def test_continuation_and_regenerated_damage_equal_an_uninterrupted_run(tmp_path, monkeypatch):
    _write(tmp_path / "whole", n=60)
    _kill_after(monkeypatch, 3, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        _write(tmp_path / "cut", n=60)
    monkeypatch.undo()
    shard = tmp_path / "cut" / "shard_00001.pt"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in a complete shard of the unfinished run
    shard.write_bytes(bytes(data))
    notices = []
    synthesize_dataset(red_teacher(), AimingSynthesizer(batch_size=12), tmp_path / "cut", 60, shard_size=16,
                       progress=False, log=notices.append)
    assert any("shard_00001.pt differs from the manifest" in n and "writing it and the 1 shards after it" in n for n in notices)
    for name in sorted(p.name for p in (tmp_path / "whole").glob("shard_*.pt")):
        assert (tmp_path / "cut" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        return [obj]
    values = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple)) else []
    return [t for value in values for t in _tensors(value)]


def test_every_file_holds_only_its_own_samples_and_shards_stay_under_the_limit(tmp_path, monkeypatch):
    # Shards are slices of the drawn batches, and the run state after each keeps the rest: neither may carry the other.
    monkeypatch.setattr(shards_module, "MAX_SHARD_BYTES", 8192)
    size = shards_module.samples_per_shard(100, (3, 8, 8), 4)
    assert size < 100
    _kill_after(monkeypatch, 2, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        _write(tmp_path / "set", n=60, shard_size=100, synthesizer=AimingSynthesizer(batch_size=40))
    files = sorted((tmp_path / "set").glob("shard_*.pt")) + sorted((tmp_path / "set" / ".resume").glob("*.pt"))
    assert len(files) == 4
    for path in files:
        tensors = _tensors(torch.load(path, weights_only=True))
        for t in tensors:
            assert t.untyped_storage().nbytes() == t.numel() * t.element_size(), path.name
    for path in files[:2]:
        assert len(read_shard(path)) == size and path.stat().st_size <= 8192


def test_damage_in_a_complete_set_is_reported_not_hidden(tmp_path):
    _write(tmp_path / "set", n=20)
    shard = tmp_path / "set" / "shard_00000.pt"
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(DatafreeError, match="complete, but it does not match its manifest .*shard_00000.pt has"):
        _write(tmp_path / "set", n=20)


class OneInTen(RecordingNoise):
    """Noise the red teacher calls c0, and every tenth image c3 (red 1)."""

    def synthesize(self):
        batch = super().synthesize()
        batch.images[:, 0] = 0.0
        drawn = sum(len(images) for images in self.made) - len(batch.images)
        batch.images[(torch.arange(len(batch.images)) + drawn) % 10 == 9, 0] = 1.0
        return batch


def test_a_class_out_of_reach_is_refused_early_and_a_rare_one_is_not(tmp_path):
    # c1 never comes: refused once the draws seen show that the allowance (20 x n = 2,000) cannot fill it, not after
    # all of them: at (0 + 5) / 192 a draw, its 50 take 1,920 more than the 192 drawn, and only 1,808 are left
    synthesizer = OneInTen(batch_size=16)
    with pytest.raises(DatafreeError, match=r"after drawing 192 images \(stopped early: even at a rate well above the "
                       r"one seen, filling them would take about 2113 draws, past max_draw_factor's 2000 = 20 x "
                       r"n=100\) the teacher labelled too few as c1 0 of 50") as refused:
        _write(tmp_path / "never", n=100, synthesizer=synthesizer, class_counts={"c0": 50, "c1": 50})
    assert len(synthesizer.made) == 12 and "the synthesizer rarely makes these classes" in str(refused.value)
    # c3, one draw in ten, is within reach of the allowance: drawn until it is full
    result, synthesizer = _write(tmp_path / "rare", n=20, synthesizer=OneInTen(batch_size=16), max_draw_factor=5,
                                 class_counts={"c0": 12, "c3": 8})
    assert result.count == 20 and sum(len(images) for images in synthesizer.made) == 80


class AnsweredOneInTen(AimingSynthesizer):
    """Aims at the quota's classes; the teacher answers c0 to every image made for c1, and c3 to one image in ten
    made for c3 (c0 to the others)."""

    made_for_c3 = 0

    def _images(self, targets):
        images = super()._images(targets)
        images[targets == 1, 0] = 0.0
        for i in torch.nonzero(targets == 3).flatten().tolist():
            self.made_for_c3 += 1
            images[i, 0] = 1.0 if self.made_for_c3 % 10 == 0 else 0.0
        return images


def test_an_aiming_synthesizer_is_refused_early_from_how_its_aims_are_answered(tmp_path):
    # c1's aims are never answered c1: once every short class has been aimed at and a quarter of the 2,000 draws
    # allowed are drawn, the rate its own aims get (0 of them, generously 5 per aim) says the rest cannot fill it
    with pytest.raises(DatafreeError, match=r"after drawing (\d+) images \(stopped early: .* too few as c1 0 of 50: "
                                            r"the synthesizer aimed at these classes") as refused:
        _write(tmp_path / "never", n=100, synthesizer=AnsweredOneInTen(batch_size=16), class_counts={"c0": 50, "c1": 50})
    assert 500 <= int(str(refused.value).split()[2]) <= 520  # not the 2,000 of max_draw_factor x n
    # c3, answered to one aim in ten, is within reach: drawn until it is full
    result, _ = _write(tmp_path / "rare", n=20, synthesizer=AnsweredOneInTen(batch_size=16), max_draw_factor=20,
                       class_counts={"c0": 12, "c3": 8})
    assert result.count == 20


def test_a_class_the_synthesizer_never_makes_stops_with_the_shortfall(tmp_path):
    with pytest.raises(DatafreeError, match=r"after drawing \d+ images .* too few as c\d+ 0 of 5") as refused:
        _write(tmp_path / "set", n=20, synthesizer=RecordingNoise(batch_size=16), max_draw_factor=2,
               class_counts={"c0": 5, "c1": 5, "c2": 5, "c3": 5})
    assert "the synthesizer rarely makes these classes" in str(refused.value)
    assert "a synthesizer that aims at classes (deepinversion" in str(refused.value)
    # A synthesizer that aims at the classes is not told to use one: the teacher rarely gives them (a weak teacher)
    class Missing(AimingSynthesizer):  # aims at every class, and the teacher answers c0 to all it makes
        def _images(self, targets):
            return super()._images(torch.zeros_like(targets))

    with pytest.raises(DatafreeError) as refused:
        _write(tmp_path / "aimed", n=20, synthesizer=Missing(batch_size=16), max_draw_factor=2,
               class_counts={"c0": 5, "c1": 5, "c2": 5, "c3": 5})
    assert "the synthesizer aimed at these classes and the teacher rarely gave them to its images" in str(refused.value)
    assert "a synthesizer that aims at classes" not in str(refused.value)
    from datafree.synthesizers import DeepInversion, FastSynthesizer, GeneratorSynthesizer, NoiseSynthesizer

    assert DeepInversion.aims_at_classes and FastSynthesizer.aims_at_classes and not NoiseSynthesizer.aims_at_classes
    assert GeneratorSynthesizer(conditional=True).aims_at_classes and not GeneratorSynthesizer().aims_at_classes
    # The refusal says to try class_counts=as_drawn: that command, into the same out=, was refused as 'a different
    # synthetic data set' although the first run had kept no sample; it starts afresh and says so.
    notices = []
    result = synthesize_dataset(red_teacher(), RecordingNoise(batch_size=16), tmp_path / "set", 20, shard_size=16,
                                class_counts="as_drawn", progress=False, log=notices.append)
    assert result.count == 20 and SyntheticSet(tmp_path / "set").complete
    assert any(n.startswith(f"notice: out={tmp_path / 'set'} held no sample of an earlier run with other settings ("
                            "class_counts") and n.endswith("): started afresh") for n in notices), notices
