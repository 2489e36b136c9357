"""The noise baseline: uniform pixels, what every method must beat."""
import torch

from contract import SynthesizerContract, bind
from datafree.synthesizers import NoiseSynthesizer


class TestNoise(SynthesizerContract):
    uses_teacher = False
    needs_batchnorm = False
    bad_settings = [(dict(batch_size=0), "batch_size must be an int >= 1")]

    def make(self, **overrides):
        return NoiseSynthesizer(**{**dict(batch_size=6), **overrides})


def test_noise_synthesizer_draws_uniform_pixels(bn_teacher):
    synth = bind(NoiseSynthesizer(batch_size=6), bn_teacher)
    batch = synth.synthesize()
    assert batch.images.shape == (6, 3, 8, 8) and 0 <= batch.images.min() and batch.images.max() <= 1
    assert synth.sample(3).shape == (3, 3, 8, 8)
