"""The layout a network runs in: channels_last on a GPU; on the CPU only networks of depthwise convolutions with
BatchNorm and those whose class asks for it (the demo's small CNNs), whose training steps run faster so there. The
synthesizers' generators run channels_last on every device and hand their images on NCHW (docs/benchmarks.md,
"Memory layout on the CPU")."""
import pytest
import torch
import torchvision
from torch import nn

from datafree.models import create_model
from datafree.synthesizers import FastSynthesizer, GeneratorSynthesizer
from datafree.utils.device import channels_last_on_cpu, depthwise_with_batchnorm, generator_layout, network_layout
from nets import TinyBNNet

CPU = torch.device("cpu")


def _channels_last(net: nn.Module) -> bool:
    # a weight of one input channel (a depthwise one) or one pixel is both layouts at once: the others tell
    weights = [m.weight for m in net.modules()
               if isinstance(m, nn.Conv2d) and m.weight.shape[1] > 1 and m.weight.shape[-1] > 1]
    return all(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous() for w in weights)


@pytest.mark.parametrize("build, expected", [
    (lambda: torchvision.models.mobilenet_v3_small(num_classes=3), True),
    (lambda: torchvision.models.shufflenet_v2_x0_5(num_classes=3), True),
    (lambda: create_model("mobilenetv2", num_classes=3), True),
    (lambda: create_model("resnet18", num_classes=3), False),
    (lambda: create_model("tinycnn", num_classes=3), True),  # the demo's teacher: its class asks for it
    (lambda: torchvision.models.convnext_tiny(num_classes=3), False),  # depthwise, but LayerNorm: 0.95-1.01x measured
    (lambda: torchvision.models.regnet_x_400mf(num_classes=3), False),  # grouped, not depthwise
], ids=["mobilenet_v3_small", "shufflenet", "zoo_mobilenetv2", "zoo_resnet18", "tinycnn", "convnext", "regnet_x"])
def test_on_the_cpu_depthwise_batchnorm_networks_and_the_demos_go_channels_last(build, expected):
    net = build()
    assert channels_last_on_cpu(net) is expected
    assert network_layout(net, CPU) is net and _channels_last(net) is expected


def test_a_users_class_asks_for_channels_last_on_the_cpu_and_a_wrapper_follows_it():
    class Asks(nn.Sequential):
        channels_last_on_cpu = True

    net = Asks(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU())
    assert not depthwise_with_batchnorm(net) and channels_last_on_cpu(net)
    wrapped = nn.Sequential(nn.Identity(), net)  # as Normalized wraps a teacher or student
    assert network_layout(wrapped, CPU) is wrapped and _channels_last(wrapped)
    assert not channels_last_on_cpu(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)))


def test_tensors_stay_as_they_are_on_the_cpu_and_a_channels_last_network_takes_them():
    x = torch.rand(2, 3, 32, 32)
    assert network_layout(x, CPU) is x
    torch.manual_seed(0)
    reference = torchvision.models.mobilenet_v3_small(num_classes=3).eval()
    net = network_layout(torchvision.models.mobilenet_v3_small(num_classes=3).eval(), CPU)
    net.load_state_dict(reference.state_dict())  # the values are kept, only the strides change
    assert _channels_last(net) and not _channels_last(reference)
    with torch.no_grad():
        torch.testing.assert_close(net(x), reference(x), rtol=1e-4, atol=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), reference.state_dict().values()))


def test_a_generator_goes_channels_last_and_makes_the_same_images():
    torch.manual_seed(0)
    reference = create_model("dcgan_generator", latent_dim=16, image_size=16, base_width=8)
    generator = generator_layout(create_model("dcgan_generator", latent_dim=16, image_size=16, base_width=8))
    generator.load_state_dict(reference.state_dict())
    assert _channels_last(generator) and not _channels_last(reference)
    z = torch.randn(8, 16)
    torch.testing.assert_close(generator(z), reference(z), rtol=1e-4, atol=1e-5)  # in training mode: batch statistics


GPU = pytest.param(torch.device("cuda"), marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(),
                                                                                   reason="needs a CUDA device")])


@pytest.mark.parametrize("device", [CPU, GPU], ids=["cpu", "cuda"])
@pytest.mark.parametrize("synthesizer", [
    lambda: FastSynthesizer(batch_size=8, g_steps=2, latent_dim=8, base_width=8, amp=False),
    lambda: GeneratorSynthesizer(generator=create_model("dcgan_generator", num_classes=4, latent_dim=8, image_size=8,
                                                        base_width=8), latent_dim=8, batch_size=8, amp=False),
], ids=["fast", "adversarial"])
def test_the_synthesizers_generators_run_channels_last_and_hand_on_nchw(synthesizer, device, bn_teacher):
    synth = synthesizer()
    synth.bind(bn_teacher.to(device), TinyBNNet().to(device), 4, (3, 8, 8), device)
    assert _channels_last(synth.generator)  # on a GPU too: a whole generator step ran 1.08-1.21x faster so
    images = synth.synthesize().images
    assert images.is_contiguous()  # NCHW, as the synthesizers hand them on (and as the CPU's networks take them)
