"""The pre-flight probe: a student too large for the device is refused in one line before any work, and a probe
that fits leaves nothing behind."""
import pytest
import torch
from torch import nn

from datafree.distill.preflight import check_student_fits
from datafree.errors import DatafreeError
from datafree.models import create_model

CPU = torch.device("cpu")


def _student():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.5),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))
    return net.eval()


def test_a_probe_that_fits_leaves_the_student_and_the_random_streams_as_they_were():
    student, teacher = _student(), create_model("microcnn", num_classes=10).eval()
    before = {k: v.clone() for k, v in student.state_dict().items()}
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    check_student_fits(teacher, student, batch_size=4, input_size=(3, 8, 8), device=CPU, amp=False)
    assert torch.equal(torch.rand(3), expected)  # the dropout and the pixels drew from a forked stream
    assert not student.training and all(p.grad is None for p in student.parameters())
    after = student.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm statistics and counters included
    assert int(after["1.num_batches_tracked"]) == 0


class _TooLarge(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


def test_a_student_too_large_is_one_line_naming_the_batch_and_what_to_lower():
    with pytest.raises(DatafreeError) as caught:
        check_student_fits(None, _TooLarge(), batch_size=512, input_size=(3, 8, 8), device=CPU, amp=False,
                           label="the student torchvision:resnet152")
    message = str(caught.value)
    assert "\n" not in message and "Tried to allocate" not in message
    for needle in ("the student torchvision:resnet152 does not fit", "trainer.batch_size=512",
                   "trainer.batch_size (e.g. 256)", "trainer.pool_capacity"):
        assert needle in message, message
