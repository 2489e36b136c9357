"""Shards, the manifest and the class quota: the pieces a data set folder is made of."""
import json

import pytest
import torch

from datafree.errors import DatafreeError
from datafree.export.manifest import consistency_problems, read_manifest, teacher_fingerprint
from datafree.export.quota import Quota, class_targets
from datafree.export.samples import Samples
from datafree.export.shards import MAX_SHARD_BYTES, read_shard, samples_per_shard, write_shard
from datafree.models import create_model


def _samples(n=10, classes=5, start=0):
    return Samples(torch.randint(0, 256, (n, 3, 4, 4), dtype=torch.uint8), torch.randn(n, classes).half(),
                   torch.randint(0, classes, (n,)), torch.arange(start, start + n))


def test_shard_round_trip_is_a_plain_weights_only_file(tmp_path):
    samples = _samples()
    entry = write_shard(tmp_path / "shard_00000.pt", samples)
    blob = torch.load(tmp_path / "shard_00000.pt", weights_only=True)
    assert set(blob) == {"format", "version", "images", "logits", "labels", "indices"}
    back = read_shard(tmp_path / "shard_00000.pt")
    for name in ("images", "logits", "labels", "indices"):
        assert torch.equal(getattr(back, name), getattr(samples, name)), name
    assert entry["bytes"] == (tmp_path / "shard_00000.pt").stat().st_size
    assert not list(tmp_path.glob(".*"))  # no temp file left


@pytest.mark.parametrize("damage", ["truncate", "foreign", "wrong_dtype"])
def test_damaged_or_foreign_shard_is_one_clear_error(tmp_path, damage):
    path = tmp_path / "shard_00000.pt"
    write_shard(path, _samples())
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "foreign":
        torch.save({"weights": torch.zeros(3)}, path)
    else:
        blob = torch.load(path, weights_only=True)
        blob["logits"] = blob["logits"].float()
        torch.save(blob, path)
    with pytest.raises(DatafreeError, match="shard|datafree shard"):
        read_shard(path)


def test_shards_stay_under_the_size_cap():
    assert samples_per_shard(10_000, (3, 32, 32), 10) == 10_000
    big = samples_per_shard(10_000, (3, 224, 224), 1000)
    assert big < 10_000 and big * (3 * 224 * 224 + 2000) <= MAX_SHARD_BYTES


def test_teacher_fingerprint_follows_the_weights_not_the_object():
    torch.manual_seed(0)
    a = create_model("microcnn", num_classes=10)
    b = create_model("microcnn", num_classes=10)
    b.load_state_dict(a.state_dict())
    assert teacher_fingerprint(a) == teacher_fingerprint(b)
    with torch.no_grad():
        b.classifier.bias[0] += 1e-3
    assert teacher_fingerprint(a) != teacher_fingerprint(b)


def test_class_targets():
    names = ["cat", "dog", "emu"]
    assert class_targets("balanced", 10, names) == [4, 3, 3]
    assert class_targets("as_drawn", 10, names) is None
    assert class_targets({"dog": 6, "0": 4}, 10, names) == [4, 6, 0]
    assert class_targets([1, 2, 7], 10, names) == [1, 2, 7]
    for spec, needle in [({"cow": 10}, "unknown classes"), ({"cat": 3, "dog": 3}, "add up to 6 but n=10"),
                         ([5, 5], "lists 2 counts"), ({"cat": -1, "dog": 11}, ">= 0"), ("uniform", "not a choice"),
                         ({"cat": 5, "0": 5}, "twice")]:
        with pytest.raises(DatafreeError, match=needle):
            class_targets(spec, 10, names)


def test_quota_keeps_samples_in_order_while_their_class_has_room():
    quota = Quota([2, 1, 0], 3, 3)
    keep = quota.accept(torch.tensor([0, 0, 0, 2, 1, 1, -1]))
    assert keep.tolist() == [True, True, False, False, True, False, False]
    assert quota.done and quota.shortfall() == {}
    drawn = Quota(None, 4, 3)
    assert drawn.accept(torch.tensor([2, -1, 2, 1, 0, 0])).tolist() == [True, False, True, True, True, False]
    short = Quota([3, 3], 6, 2)
    short.accept(torch.tensor([0, 0, 0, 0]))
    assert short.shortfall() == {1: (0, 3)} and short.weights().tolist() == [0.0, 3.0]


def test_quota_says_which_classes_the_draws_left_cannot_fill_at_a_generous_rate():
    quota = Quota([10, 10], 20, 2)
    quota.accept(torch.zeros(19, dtype=torch.int64))
    assert quota.out_of_reach(0) == {}  # fewer draws seen than n: too early to judge
    quota.accept(torch.tensor([0] * 99 + [1]))  # class 1 once in 119 draws
    # at (1 + 3 + 5) / 119 a draw, 9 more of class 1 take about 119 draws
    assert quota.out_of_reach(10_000) == {} and quota.out_of_reach(100) == {1: 120}
    assert Quota(None, 20, 2).out_of_reach(0) == {}  # as_drawn: any class will do
    # A synthesizer that aims: judged by how each short class's aims were answered, the best of them for each class
    aimed = Quota([10, 10, 10], 30, 3)
    aimed.accept(torch.tensor([0] * 25 + [2] * 5), aims=torch.tensor([0] * 25 + [1] * 5))  # c1's aims answered c2
    assert aimed.shortfall() == {1: (0, 10), 2: (5, 10)}
    assert aimed.out_of_reach(100, aiming=True) == {}  # c2 is short and not aimed at yet: what its aims give is unknown
    aimed.accept(torch.tensor([2] * 5 + [0] * 15), aims=torch.tensor([2] * 5 + [1] * 15))  # c2 fills from its aims
    # c1: answered 0 times in 20 of its own aims, so (0 + 5) / 20 a draw: its 10 take 41 draws
    assert aimed.out_of_reach(100, aiming=True) == {} and aimed.out_of_reach(40, aiming=True) == {1: 41}
    assert Quota([10, 10], 20, 2).out_of_reach(0, aiming=True) == {}  # no aims seen


def test_manifest_that_contradicts_itself_is_refused(tmp_path):
    with pytest.raises(DatafreeError, match="holds no manifest.json"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(DatafreeError, match="cannot be read"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(DatafreeError, match="not the manifest of a datafree synthetic data set"):
        read_manifest(tmp_path)
    manifest = {"format": "datafree.synthetic", "version": 1, "n": 10, "count": 5, "classes": ["a", "b"], "complete": True,
                "class_counts": {"written": [2, 3]}, "files": {"shard_00000.pt": {}},
                "shards": [{"file": "shard_00000.pt", "start": 0, "count": 4}]}
    problems = consistency_problems(manifest)
    assert any("hold 4 samples but count is 5" in p for p in problems)
    assert any("complete with 5 of 10" in p for p in problems)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DatafreeError, match="contradicts itself"):
        read_manifest(tmp_path)
