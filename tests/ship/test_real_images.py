"""datafree.ship.sources.real_split: what deploy and report measure on is a random sample of every class,
whatever the order the data set is stored in."""
import pytest
import torch

from datafree.data import ImageDataset
from datafree.errors import DatafreeError
from datafree.ship.sources import real_split
from datafree.teachers import ClassifierInfo

CLASSES = [f"c{k}" for k in range(10)]


def class_sorted(per_class: int = 50) -> ImageDataset:
    """A data set stored as CIFAR-10's folders are read: every image of class 0, then of class 1, ..."""
    labels = torch.arange(10).repeat_interleave(per_class)
    images = labels.view(-1, 1, 1, 1).expand(-1, 3, 4, 4).to(torch.uint8).clone()  # each image holds its label
    return ImageDataset(images, labels, CLASSES)


NODE = {"test": {"_target_": f"{__name__}.class_sorted"}}
INFO = ClassifierInfo("microcnn", 10, (3, 4, 4), (0.5,) * 3, (0.25,) * 3, CLASSES)


def test_the_first_images_measured_cover_every_class():
    assert torch.equal(real_split(NODE, "test", INFO).labels, class_sorted().labels)  # unsampled: as stored
    test = real_split(NODE, "test", INFO, sample=1000)
    assert len(test) == 500 and sorted(test.labels.tolist()) == sorted(class_sorted().labels.tolist())
    assert torch.equal(test.images[:, 0, 0, 0].long(), test.labels)  # images keep their labels
    assert set(test.labels[:100].tolist()) == set(range(10))  # the stored order's first 100 are one class


def test_a_sample_is_repeatable_follows_the_seed_and_holds_at_most_what_is_asked():
    def labels(**kw):
        return real_split(NODE, "test", INFO, **kw).labels

    assert torch.equal(labels(sample=100), labels(sample=100)) and len(labels(sample=100)) == 100
    assert torch.equal(labels(sample=100), labels(sample=1000)[:100])  # one order, cut where asked
    assert not torch.equal(labels(sample=100, seed=1), labels(sample=100))


class _AlwaysClassZero(torch.nn.Module):
    """Sure of class 0 whatever it sees."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3 * 4 * 4, 10)
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.bias.copy_(torch.tensor([10.0] + [0.0] * 9))

    def forward(self, images):
        return self.fc(images.flatten(1))


def test_distills_headline_samples_a_test_set_larger_than_its_limit():
    """On the first 50 images in stored order (all class 0) this student would look right and calibrated
    (ECE about 0); on a sample of every class it is right one time in ten and sure of itself (ECE about 0.9)."""
    from datafree.ship.report import headline

    line = headline(_AlwaysClassZero(), (3, 4, 4), None, class_sorted(), limit=50)
    ece = float(line.split("ECE ")[1].split()[0].rstrip(";"))
    assert ece > 0.5, line


def sized(image_size=None) -> ImageDataset:
    """class_sorted() at ``image_size`` (None: its own 4 px), as a loader given data.image_size reads it."""
    data = class_sorted()
    if image_size is None:
        return data
    images = data.images.float().repeat_interleave(image_size // 4, 2).repeat_interleave(image_size // 4, 3)
    return ImageDataset(images.to(torch.uint8), data.labels, CLASSES)


def test_data_image_size_auto_reads_the_real_images_at_the_students_size():
    """A run made with data.image_size=auto (its recipe's data node says 'auto') is measured at its student's size."""
    node = {"test": {"_target_": f"{__name__}.sized", "image_size": "auto"}}
    info = ClassifierInfo("microcnn", 10, (3, 8, 8), (0.5,) * 3, (0.25,) * 3, CLASSES)
    assert real_split(node, "test", info).images.shape[1:] == (3, 8, 8)
    assert real_split({"test": {**node["test"], "image_size": 8}}, "test", info).images.shape[1:] == (3, 8, 8)


def without_class_3() -> ImageDataset:
    """A test split read alone from folders that lack class c3: its classes are c0-c2 and c4-c9, labels 0..8."""
    full = class_sorted(2)
    keep = full.labels != 3
    labels = full.labels[keep]
    return ImageDataset(full.images[keep], labels - (labels > 3).long(), [c for c in CLASSES if c != "c3"])


def test_real_images_without_some_class_are_labelled_by_the_students_class_names():
    test = real_split({"test": {"_target_": f"{__name__}.without_class_3"}}, "test", INFO)
    assert test.classes == CLASSES and 3 not in test.labels.tolist()
    assert torch.equal(test.images[:, 0, 0, 0].long(), test.labels)  # each image holds its true class


def with_another_class() -> ImageDataset:
    """A test split of the student's ten classes and an eleventh folder, 'c10', that the teacher does not know."""
    full = class_sorted(2)
    return ImageDataset(torch.cat([full.images, full.images[:2]]), torch.cat([full.labels, torch.tensor([10, 10])]),
                        [*CLASSES, "c10"])


def test_real_images_with_a_class_the_student_lacks_name_its_folder():
    """report/deploy data=imagefolder with a test folder of a class the teacher does not have: the line gave the class
    counts alone (11 and 10); it names the folder, as distill's and train-teacher's do."""
    with pytest.raises(DatafreeError, match=r"^data.test's class folders c10 are not among the student's classes "
                                            r"\(c0, c1, c2, c3, c4, c5, c6, c7, \.\.\.\): name each folder after one"):
        real_split({"test": {"_target_": f"{__name__}.with_another_class"}}, "test", INFO)
