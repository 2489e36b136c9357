import pytest
import torch

from datafree.errors import DatafreeError
from datafree.models import Generator, create_model


@pytest.mark.parametrize("image_size", [16, 32, 64])
@pytest.mark.parametrize("conditional", [False, True])
def test_output_shape_and_range(image_size, conditional):
    torch.manual_seed(0)
    gen = create_model(
        "dcgan_generator", num_classes=10, latent_dim=16, image_size=image_size,
        channels=3, base_width=8, conditional=conditional,
    )
    assert isinstance(gen, Generator)
    assert (gen.latent_dim, gen.image_size, gen.channels, gen.conditional) == (16, image_size, 3, conditional)
    z = gen.sample_latent(4, "cpu")
    labels = torch.tensor([0, 1, 2, 9]) if conditional else None
    x = gen(z, labels)
    assert x.shape == (4, 3, image_size, image_size)
    assert x.min() >= 0 and x.max() <= 1


def test_non_multiple_sizes_of_two_are_reached():
    torch.manual_seed(0)
    for size, channels in ((224, 3), (28, 1)):
        gen = Generator(latent_dim=8, image_size=size, channels=channels, base_width=4)
        assert gen(gen.sample_latent(1)).shape == (1, channels, size, size)


@pytest.mark.parametrize("size, made", [(299, (288, 288)), ((45, 30), (44, 32)), (30, (32, 32)), (4, (8, 8)),
                                        ((513, 512), (512, 512))])
def test_sizes_doubling_cannot_reach_are_made_at_the_nearest_it_can_and_resized(size, made):
    """Inception's 299 px, scans of 45x30: made with a first map of at most 16 a side (not 75x75 at 300, which the
    first Linear would pay for), then resized bilinearly, which keeps pixels in [0, 1]."""
    torch.manual_seed(0)
    gen = Generator(latent_dim=8, image_size=size, channels=1, base_width=4)
    height, width = (size, size) if isinstance(size, int) else size
    x = gen(gen.sample_latent(3))
    assert gen.made_size == made and max(gen.init_size) <= 16
    assert x.shape == (3, 1, height, width) and x.min() >= 0 and x.max() <= 1
    x.mean().backward()
    assert all(p.grad is not None for p in gen.parameters())


def test_defaults():
    gen = create_model("dcgan_generator")
    assert (gen.latent_dim, gen.image_size, gen.channels, gen.conditional) == (100, 32, 3, False)
    assert gen.sample_latent(3, "cpu").shape == (3, 100)


def test_sample_latent_follows_the_given_rng():
    gen = Generator(latent_dim=8, image_size=16, base_width=4)
    a = gen.sample_latent(2, "cpu", generator=torch.Generator().manual_seed(1))
    b = gen.sample_latent(2, "cpu", generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


@pytest.mark.parametrize("conditional", [False, True])
def test_gradient_reaches_every_parameter(conditional):
    torch.manual_seed(0)
    gen = Generator(latent_dim=8, image_size=16, base_width=8, conditional=conditional, num_classes=3)
    z = gen.sample_latent(4).requires_grad_(True)
    labels = torch.tensor([0, 1, 2, 0]) if conditional else None
    gen(z, labels).mean().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    for name, p in gen.named_parameters():
        if name.startswith("embed"):
            # Only the rows of the labels used get a gradient.
            assert p.grad[:3].abs().sum() > 0, name
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_conditional_output_depends_on_label():
    torch.manual_seed(0)
    gen = Generator(latent_dim=8, image_size=16, base_width=8, conditional=True, num_classes=5).eval()
    z = gen.sample_latent(1).repeat(2, 1)
    x = gen(z, torch.tensor([0, 4]))
    assert not torch.allclose(x[0], x[1])


def test_conditional_without_labels_fails_clearly():
    gen = Generator(latent_dim=8, image_size=16, base_width=4, conditional=True)
    with pytest.raises(DatafreeError, match="labels"):
        gen(gen.sample_latent(2))


def test_wrong_latent_width_fails_clearly():
    gen = Generator(latent_dim=8, image_size=16, base_width=4)
    with pytest.raises(DatafreeError, match="latent_dim"):
        gen(torch.randn(2, 9))


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"latent_dim": 0}, "latent_dim"),
        ({"latent_dim": -5}, "latent_dim"),
        ({"image_size": 0}, "image_size"),
        ({"image_size": (32, -4)}, "image_size"),
        ({"channels": 0}, "channels"),
    ],
)
def test_bad_settings_say_what_to_change(kwargs, field):
    with pytest.raises(DatafreeError, match=field):
        create_model("dcgan_generator", **kwargs)


def _snapshot(gen):
    return {k: v.clone() for k, v in gen.state_dict().items()}


@pytest.mark.parametrize("conditional", [False, True])
def test_reset_first_layer_changes_only_the_first_layer(conditional):
    torch.manual_seed(0)
    gen = Generator(latent_dim=8, image_size=16, base_width=4, conditional=conditional, num_classes=3)
    before = _snapshot(gen)
    gen.reset_first_layer()
    after = gen.state_dict()
    first = {"l1.weight", "l1.bias"} | ({"embed.weight"} if conditional else set())
    for key in before:
        if key in first:
            assert not torch.equal(before[key], after[key]), key
        else:
            assert torch.equal(before[key], after[key]), key


def test_reset_parameters_reinitialises_everything():
    torch.manual_seed(0)
    gen = Generator(latent_dim=8, image_size=16, base_width=4)
    # Move BN away from its initial state so that a reset is observable there too.
    with torch.no_grad():
        for name, p in gen.named_parameters():
            p.add_(1.0)
    gen(gen.sample_latent(4))  # updates BN running stats in train mode
    before = _snapshot(gen)
    gen.reset_parameters()
    after = gen.state_dict()
    for key in before:
        if key.endswith("num_batches_tracked"):
            assert after[key] == 0
        else:
            assert not torch.equal(before[key], after[key]), key


def test_non_square_images_and_sides_that_cannot_double():
    gen = Generator(latent_dim=8, image_size=(12, 20), channels=1, base_width=4)
    assert gen(gen.sample_latent(3)).shape == (3, 1, 12, 20) and gen.made_size == (12, 20)  # no resize
    assert Generator(latent_dim=8, image_size=[64, 224], base_width=4)(torch.randn(2, 8)).shape == (2, 3, 64, 224)
    odd = Generator(latent_dim=8, image_size=(12, 18), base_width=4)  # 18 is no multiple of 4: made at 12x16
    assert odd(torch.randn(2, 8)).shape == (2, 3, 12, 18) and odd.made_size == (12, 16)
