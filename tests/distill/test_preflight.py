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


# -- the CPU's memory check -------------------------------------------------------------------------------------
from datafree.distill.preflight import activation_bytes_per_image, check_host_memory  # noqa: E402


def _conv_relu():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.5), nn.Flatten(),
                         nn.Linear(8 * 8 * 8, 10)).eval()


def test_what_a_step_keeps_per_image_is_what_autograd_saves_for_its_backward():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 10))
    # the convolution keeps its input (the pixels), the ReLU its output, which the Linear keeps too (a view of
    # it: counted once); the weights are not per image
    assert activation_bytes_per_image(net, (3, 8, 8), train=True, device=CPU) == (3 + 8) * 8 * 8 * 4
    wider = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU())
    assert activation_bytes_per_image(wider, (3, 8, 8), train=True, device=CPU) == (3 + 16) * 8 * 8 * 4
    assert activation_bytes_per_image(wider, (3, 16, 16), train=True, device=CPU) == (3 + 16) * 16 * 16 * 4


def test_measuring_leaves_the_network_and_the_random_streams_as_they_were():
    net = _conv_relu()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    activation_bytes_per_image(net, (3, 8, 8), train=True, device=CPU)
    assert torch.equal(torch.rand(3), expected)
    assert not net.training and all(p.grad is None for p in net.parameters())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def _check(available, **given):
    options = dict(batch_size=512, synthesis_batch=256, synthesis_through_student=True, pool_bytes=10 * 2**20,
                   input_size=(3, 8, 8), available=available)
    options.update(given)
    check_host_memory(_conv_relu(), _conv_relu(), **options)


def test_a_run_whose_batches_fit_the_free_memory_passes():
    _check(2**30)
    _check(None)  # a machine whose free memory cannot be read is not checked (available=None: read it, here Linux)
    _check(10 * 2**20 + 1, batch_size=0, synthesis_batch=0)  # nothing back-propagated: the pool alone


def test_batches_too_large_for_the_cpu_are_one_line_naming_each_part_and_the_batches_that_fit():
    per_student = activation_bytes_per_image(_conv_relu(), (3, 8, 8), train=True, device=CPU)
    per_teacher = activation_bytes_per_image(_conv_relu(), (3, 8, 8), train=False, device=CPU)  # as synthesis runs it
    assert per_teacher < per_student  # in eval mode the dropout keeps no mask
    per_synthesis = 2 * per_teacher  # back-propagated through both, in eval mode
    with pytest.raises(DatafreeError) as caught:
        _check(100 * per_student, pool_bytes=2**16)
    message = str(caught.value)
    assert "\n" not in message
    need = max(256 * per_synthesis, 512 * per_student) + 2**16
    for needle in (f"needs at least {need / 2**20:.0f} MiB of memory on the CPU",
                   f"synthesizer.batch_size=256 keeps {256 * per_synthesis / 2**20:.0f} MiB of activations "
                   f"({per_synthesis / 2**10:.0f} kB an image at 8x8)",
                   f"a student step at trainer.batch_size=512 {512 * per_student / 2**20:.0f} MiB",
                   "the replay pool 64 kB", "killed without a word", "or run it on a GPU"):
        assert needle in message, message
    # what fits in four fifths of the memory less the pool, a power of two each
    room = 0.8 * 100 * per_student - 2**16
    fits = [1 << (int(room / per).bit_length() - 1) for per in (per_synthesis, per_student)]
    assert f"lower synthesizer.batch_size (e.g. {fits[0]}) and trainer.batch_size (e.g. {fits[1]})" in message
    assert "pool_capacity" not in message  # the pool is within a quarter of the memory
    with pytest.raises(DatafreeError) as caught:
        _check(100 * per_student, pool_bytes=0, synthesis_through_student=False, synthesis_batch=16)
    message = str(caught.value)  # the synthesis step fits: only the student's batch is named
    assert "lower trainer.batch_size (e.g. 64)" in message and "lower synthesizer" not in message


def test_a_pool_larger_than_a_quarter_of_the_memory_is_named_with_the_capacity_that_fits():
    with pytest.raises(DatafreeError) as caught:
        _check(40 * 2**20, pool_bytes=50 * 2**20, batch_size=1, synthesis_batch=1)
    message = str(caught.value)
    assert "the replay pool 50 MiB" in message
    assert f"lower trainer.pool_capacity (e.g. {10 * 2**20 // (3 * 8 * 8)}, a quarter of the memory" in message
    assert "batch_size (e.g." not in message
    # the auto pool took a quarter of what was free when it was sized, a little more than a quarter of what is free
    # now that the networks are built: it is not what to lower
    with pytest.raises(DatafreeError) as caught:
        _check(40 * 2**20, pool_bytes=int(0.26 * 40 * 2**20), batch_size=100_000, synthesis_batch=1)
    assert "pool_capacity" not in str(caught.value) and "trainer.batch_size (e.g." in str(caught.value)


def test_a_step_that_does_not_fit_at_one_image_names_the_image_size():
    per_image = activation_bytes_per_image(_conv_relu(), (3, 8, 8), train=True, device=CPU)
    with pytest.raises(DatafreeError, match=r"lower the image size \(data.image_size\) or the networks: one image's "
                                            "step alone does not fit"):
        _check(per_image, pool_bytes=0)


def test_processes_sharing_the_machine_share_its_memory():
    per_image = activation_bytes_per_image(_conv_relu(), (3, 8, 8), train=True, device=CPU)
    _check(600 * per_image, pool_bytes=0)
    with pytest.raises(DatafreeError) as caught:
        _check(600 * per_image, pool_bytes=0, processes=2)
    message = str(caught.value)
    assert "is available: for each of its 2 processes on this machine, a synthesis step" in message
    assert "trainer.batch_size=512" in message and "global_batch" not in message
    # global_batch=true: the recipe's 512 is shared by the 2 processes, each running 256; the suggestion is global too
    with pytest.raises(DatafreeError) as caught:
        _check(300 * per_image, pool_bytes=0, processes=2, shared_batches=2, batch_size=256, synthesis_batch=128)
    message = str(caught.value)
    fits = 1 << (int(0.8 * 150 * per_image / per_image).bit_length() - 1)  # per process, half the memory each
    assert "synthesizer.batch_size=256 keeps" in message and "a student step at trainer.batch_size=512" in message
    assert "(global_batch=true: 2 processes share each batch)" in message
    assert f"trainer.batch_size (e.g. {2 * fits})" in message


class _SeesDevice(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.devices = nn.Conv2d(3, 8, 3, padding=1), []

    def forward(self, x):
        self.devices.append(x.device.type)
        return self.conv(x).relu()


def test_a_network_is_measured_on_the_meta_device_and_one_that_cannot_run_there_on_pixels():
    eager = _SeesDevice()
    per_image = activation_bytes_per_image(eager, (3, 8, 8), train=True, device=CPU)
    assert set(eager.devices) == {"meta"}  # shapes only: no memory, no arithmetic, at any image size
    assert per_image == (3 + 8) * 8 * 8 * 4
    scripted = torch.jit.script(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()))  # TorchScript: not on meta
    assert activation_bytes_per_image(scripted, (3, 8, 8), train=True, device=CPU) == per_image


def test_nothing_the_probe_ran_stays_in_memory():
    # a saved output handed back to autograd as itself holds its own grad_fn: a cycle Python cannot collect, which
    # kept every activation of the probe (11 GiB for a ResNet-50 at 1024 px, then killed by the kernel)
    import gc

    def probe_shaped():  # tensors of the probe's batches (2 and 4) of pixels or of the first layer's output
        gc.collect()
        return {id(o): o for o in gc.get_objects() if torch.is_tensor(o) and o.dim() == 4 and o.shape[0] in (2, 4)
                and tuple(o.shape[1:]) in ((3, 8, 8), (8, 8, 8))}

    for network in (_conv_relu(), torch.jit.script(_conv_relu())):
        before = probe_shaped()  # another test's, in this process
        activation_bytes_per_image(network, (3, 8, 8), train=True, device=CPU)
        left = [t for key, t in probe_shaped().items() if key not in before]
        assert left == [], [(tuple(t.shape), t.device) for t in left]
