"""Seed every generator with ``seed + rank`` so that processes differ but runs repeat."""
import random

import numpy as np
import torch

from datafree.utils.dist import rank


def seed_everything(seed: int) -> int:
    """Seed torch (CPU and CUDA), numpy and random; returns the per-rank seed used."""
    effective = int(seed) + rank()
    random.seed(effective)
    np.random.seed(effective % 2**32)
    torch.manual_seed(effective)
    return effective
