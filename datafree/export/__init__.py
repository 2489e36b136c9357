"""Synthetic data sets on disk: write them (``synthesize``), read them back, check them, audit them.

A data set is a folder: ``manifest.json`` (what it is, where it came from, a sha256 of
every file), shard files of samples (uint8 images, float16 teacher logits, labels,
indices) and, when asked for, an ImageFolder of PNGs with a labels/logits sidecar.
"""
from datafree.export.manifest import MANIFEST, read_manifest, teacher_fingerprint
from datafree.export.reader import SyntheticSet
from datafree.export.samples import Samples
from datafree.export.synthesize import synthesize_dataset

__all__ = ["MANIFEST", "Samples", "SyntheticSet", "read_manifest", "synthesize_dataset", "teacher_fingerprint"]

