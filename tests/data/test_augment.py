"""shift_flip: every output image is its input moved by one offset in range (and maybe flipped), per image."""
import pytest
import torch
import torch.nn.functional as F

from datafree.data.augment import shift_flip


def _candidates(image, shift, border):
    """Every image shift_flip may return for ``image``."""
    c, h, w = image.shape
    out = []
    for dy in range(-shift, shift + 1):
        for dx in range(-shift, shift + 1):
            if border == "wrap":
                moved = torch.roll(image, shifts=(-dy, -dx), dims=(1, 2))
            else:
                padded = F.pad(image, (shift, shift, shift, shift))
                moved = padded[:, shift + dy: shift + dy + h, shift + dx: shift + dx + w]
            out += [moved, moved.flip(2)]
    return out


@pytest.mark.parametrize("border", ["zeros", "wrap"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_each_image_is_a_shifted_or_flipped_copy(border, dtype):
    x = (torch.rand(12, 2, 5, 6) * 255).to(dtype)
    out = shift_flip(x, 2, True, border)
    assert out.shape == x.shape and out.dtype == dtype
    for image, moved in zip(x, out):
        assert any(torch.equal(moved, c) for c in _candidates(image, 2, border))
    # Images get their own offsets: a batch of identical images does not come back identical.
    same = shift_flip(x[:1].expand(64, -1, -1, -1).contiguous(), 2, True, border)
    assert len({tuple(img.flatten().tolist()) for img in same}) > 4


def test_no_shift_no_flip_is_the_identity_and_flip_alone_flips():
    x = torch.rand(8, 3, 4, 4)
    assert shift_flip(x, 0, False) is x
    out = shift_flip(x, 0, True)
    assert all(torch.equal(o, i) or torch.equal(o, i.flip(2)) for o, i in zip(out, x))


def test_gradients_reach_every_pixel_through_the_wrap():
    x = torch.rand(4, 3, 6, 6, requires_grad=True)
    shift_flip(x, 2, True, "wrap").sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def test_a_private_generator_repeats():
    x = torch.rand(6, 3, 5, 5)
    a = shift_flip(x, 2, True, generator=torch.Generator().manual_seed(3))
    b = shift_flip(x, 2, True, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_unknown_border_is_refused():
    with pytest.raises(ValueError, match="border"):
        shift_flip(torch.rand(1, 1, 4, 4), 1, False, "reflect")
