"""The sample grid: one labelled row per class, small images enlarged, any channel count shown."""
import numpy as np
import pytest
import torch
from PIL import Image

from datafree.utils.sample_grid import CELL, MAX_ROWS, PAD, PER_ROW, save_sample_grid


@pytest.mark.parametrize("channels", [1, 3, 4, 2])
def test_rows_by_class_and_enlarged(tmp_path, channels):
    images = torch.rand(30, channels, 8, 8)
    labels = torch.arange(30) % 3
    path = save_sample_grid(images, labels, tmp_path / "grid.png", classes=["disc", "ring", "square"], num_classes=3)
    with Image.open(path) as grid:
        assert grid.mode == "RGB"
        width, height = grid.size
    assert height == 3 * (CELL + PAD) + PAD            # one row per class, 8 px images shown at 64 px
    assert width > PER_ROW * CELL


def test_class_rows_hold_their_own_images(tmp_path):
    # Class 1's images are white, every other class's black: the second row is white, the first black.
    labels = torch.tensor([0, 1, 2, 1, 0, 2])
    images = (labels == 1).float().view(-1, 1, 1, 1).expand(-1, 3, 8, 8)
    path = save_sample_grid(images, labels, tmp_path / "grid.png", num_classes=3)
    with Image.open(path) as grid:
        pixels = torch.from_numpy(np.asarray(grid).copy())
    first_cell = pixels[PAD:PAD + CELL, -PER_ROW * (CELL + PAD):][:, :CELL]
    second_cell = pixels[2 * PAD + CELL:2 * PAD + 2 * CELL, -PER_ROW * (CELL + PAD):][:, :CELL]
    assert first_cell.max() == 0 and second_cell.min() == 255


def test_many_classes_show_the_most_common(tmp_path):
    labels = torch.randint(0, 100, (400,))
    path = save_sample_grid(torch.rand(400, 3, 32, 32), labels, tmp_path / "grid.png", num_classes=100)
    with Image.open(path) as grid:
        assert grid.size[1] == MAX_ROWS * (CELL + PAD) + PAD
