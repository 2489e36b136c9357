"""datafree audit: a planted copy and a mirrored copy of training images are found and ranked first."""
import json
import warnings

import pytest
import torch
from hydra import compose, initialize_config_module

from datafree import jobs
from datafree.data import build_dataset
from datafree.errors import DatafreeError
from datafree.export import SyntheticSet, synthesize_dataset
from datafree.export.audit import AuditSettings, nearest, run_audit
from datafree.synthesizers import Synthesizer
from datafree.synthesizers.base import Batch
from datafree.teachers import load_teacher
from test_cli import run_in_process

COPY, MIRROR = 13, 27  # positions of the planted training images among the synthetic ones
REAL_COPY, REAL_MIRROR = 101, 702


class Planted(Synthesizer):
    """One batch of noise holding a training image and a mirrored training image."""

    def __init__(self, train, n=40):
        images = torch.rand(n, 3, 8, 8)
        images[COPY] = train.images[REAL_COPY].float() / 255
        images[MIRROR] = train.images[REAL_MIRROR].flip(-1).float() / 255
        self.images, self.batch_size = images, n

    def synthesize(self):
        return Batch(images=self.images.to(self.device))


@pytest.fixture(scope="module")
def real():
    return build_dataset("shapes", "train", n=1500, image_size=8), build_dataset("shapes", "test", n=300, image_size=8)


@pytest.fixture
def planted_set(tmp_path, real, shapes_teacher_path):
    teacher = load_teacher("datafree", checkpoint=str(shapes_teacher_path))
    synthesize_dataset(teacher, Planted(real[0]), tmp_path / "set", 40, class_counts="as_drawn", progress=False,
                       log=lambda _: None)
    return tmp_path / "set", teacher


def test_planted_and_mirrored_copies_rank_first(planted_set, real):
    folder, teacher = planted_set
    result = run_audit(SyntheticSet(folder), real[0], real[1], teacher.model, torch.device("cpu"), AuditSettings(),
                       log=lambda _: None)
    report = result.report
    for space in ("pixel", "feature"):
        first_two = report["closest"][space][:2]
        assert {e["index"] for e in first_two} == {COPY, MIRROR}, (space, first_two)
        by_index = {e["index"]: e[space] for e in first_two}
        assert by_index[COPY]["nearest"] == REAL_COPY and not by_index[COPY]["flipped"]
        assert by_index[MIRROR]["nearest"] == REAL_MIRROR and by_index[MIRROR]["flipped"]
    assert report["closest"]["pixel"][0]["pixel"]["distance"] == 0.0
    assert [e["index"] for e in report["flagged"]["pixel"]["samples"]][:2] in ([COPY, MIRROR], [MIRROR, COPY])
    assert report["flagged"]["pixel"]["count"] == 2  # the noise is far from every shape
    assert report["nearest"]["pixel"]["index"][COPY] == REAL_COPY and len(report["nearest"]["feature"]["index"]) == 40
    baseline = report["distances"]["pixel"]["baseline"]
    assert 0 < baseline["q0"] <= baseline["q0.5"] and report["thresholds"]["pixel"]["value"] > 0


def test_nearest_matches_a_brute_force_search():
    torch.manual_seed(0)
    queries, keys = torch.rand(37, 20), torch.rand(113, 20)
    distance, index = nearest(queries, keys, "l2", budget_bytes=4 * 113 * 5)  # forces chunks of 5 rows
    brute = torch.cdist(queries, keys, compute_mode="donot_use_mm_for_euclid_dist") / 20 ** 0.5
    assert torch.equal(index, brute.argmin(1)) and torch.allclose(distance, brute.min(1).values, atol=1e-6)
    unit_q, unit_k = torch.nn.functional.normalize(queries, dim=1), torch.nn.functional.normalize(keys, dim=1)
    distance, index = nearest(unit_q, unit_k, "cosine", budget_bytes=4 * 113 * 7)
    assert torch.equal(index, (unit_q @ unit_k.T).argmax(1))


def test_audit_command_writes_its_report(planted_set, tmp_path, shapes_teacher_path, capsys):
    folder, _ = planted_set
    code, out, err = run_in_process(capsys, "audit", f"synthetic={folder}", "data.image_size=8", "data.train.n=1500",
                                    "data.test.n=300", "device=cpu", f"teacher.checkpoint={shapes_teacher_path}",
                                    f"hydra.run.dir={tmp_path / 'run'}")
    assert code == 0, err
    report = json.loads((tmp_path / "run" / "audit.json").read_text())
    assert report["teacher"]["matches_synthetic_set"] and report["flagged"]["any"]["count"] >= 2
    assert report["closest"]["pixel"][0]["index"] in (COPY, MIRROR)
    # The report and its pictures; no empty audit.log (the audit prints, it logs nothing)
    assert {p.name for p in (tmp_path / "run").iterdir()} == {".hydra", "audit.json", "closest_pairs.png", "distances.png"}
    with initialize_config_module("datafree.recipes", version_base="1.3"):
        wrong_size = compose("audit", overrides=[f"synthetic={folder}", "data.train.n=50", "data.test.n=50", "device=cpu"])
    with pytest.raises(DatafreeError, match=r"images of \[3, 16, 16\] but the synthetic set \[3, 8, 8\]"):
        jobs.audit_job(wrong_size, tmp_path / "run2")


def test_audit_refuses_another_class_list(planted_set, real):
    folder, teacher = planted_set
    train = real[0]
    renamed = type(train)(images=train.images, labels=train.labels, classes=[f"x{k}" for k in range(10)])
    with pytest.raises(DatafreeError, match="classes .* differ from the synthetic set's"):
        run_audit(SyntheticSet(folder), renamed, None, teacher.model, torch.device("cpu"), AuditSettings())


def test_audit_against_real_images_of_other_channels_names_data_channels(planted_set, real):
    """A grey teacher's set audited against its own folder, a few colour files among the scans (read as RGB): the
    refusal named data= and data.image_size= alone; data.channels reads the real images with the set's channels."""
    folder, teacher = planted_set
    train = real[0]
    grey = type(train)(images=train.images[:, :1].contiguous(), labels=train.labels, classes=train.classes)
    with pytest.raises(DatafreeError, match=r"has images of \[1, 8, 8\] but the synthetic set \[3, 8, 8\]: audit "
                                            r"against .*, or, where these are its images, set data.channels=3 to read "
                                            r"them with the synthetic set's 3 channel\(s\)\.$"):
        run_audit(SyntheticSet(folder), grey, None, teacher.model, torch.device("cpu"), AuditSettings())


def test_a_teacher_without_a_feature_layer_is_refused_for_the_feature_space():
    from datafree.export.audit import check_feature_teacher

    with pytest.raises(DatafreeError, match="has none: set features=false"):
        check_feature_teacher(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script is deprecated, but users still hand in such teachers
        scripted = torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2)))
    with pytest.raises(DatafreeError, match="TorchScript teacher: set features=false"):
        check_feature_teacher(scripted)



def test_the_distance_histograms_legend_never_covers_the_bars():
    from PIL import ImageChops

    from datafree.export.pictures import histogram_panel

    ends = torch.tensor([0.0, 1.0])  # the same axis for every draw
    near, far = torch.cat([ends, torch.full((98,), 0.1)]), torch.cat([ends, torch.full((98,), 0.9)])

    def panel(names, first, marker):
        return histogram_panel({names[0]: first, names[1]: far}, title="t", xlabel="x", markers={marker: 0.5})

    legend = ImageChops.difference(panel(("a", "b"), near, "m"), panel(("a long name", "another long name"), near,
                                                                        "a long marker")).getbbox()
    bars = ImageChops.difference(panel(("a", "b"), near, "m"), panel(("a", "b"), far, "m")).getbbox()
    assert legend and bars and legend[3] <= bars[1]  # the legend ends above the highest bar
