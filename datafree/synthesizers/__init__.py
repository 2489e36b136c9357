"""Synthesizers: each turns a frozen teacher into batches of inputs in [0, 1]."""
from datafree.synthesizers.adversarial import GeneratorSynthesizer
from datafree.synthesizers.augment import Augment
from datafree.synthesizers.base import Batch, Synthesizer, balanced_targets
from datafree.synthesizers.deepinversion import DeepInversion
from datafree.synthesizers.fast import FastSynthesizer
from datafree.synthesizers.images import ImagesSynthesizer
from datafree.ops.hooks import BatchNormStatistics, FeatureCapture
from datafree.synthesizers.noise import NoiseSynthesizer

__all__ = ["Augment", "Batch", "Synthesizer", "balanced_targets", "DeepInversion", "FastSynthesizer", "GeneratorSynthesizer",
           "ImagesSynthesizer", "BatchNormStatistics", "FeatureCapture", "NoiseSynthesizer"]
