"""datafree's command line with every torch.nn.Dropout turned into the identity, for an A/B of a student's dropout:

    python benchmarks/without_dropout.py distill ...     # the same arguments as python -m datafree distill ...

torchvision's MobileNetV2/V3 and EfficientNet heads hold a Dropout(0.2) (and the zoo's CIFAR students none);
distilling on an endless stream of synthetic images, that noise may only slow the student down
(docs/benchmarks.md, "The student's dropout: an A/B on the CPU"). The teachers used here hold no dropout, and in
eval mode (every evaluation, the synthesizer's queries) dropout is the identity anyway: only the student's training
steps change. A benchmark device, not a datafree setting.
"""
import sys

import torch.nn as nn

nn.Dropout.forward = lambda self, x: x  # before datafree builds any network
from datafree.cli import main  # noqa: E402

sys.argv[0] = "datafree"
sys.exit(main())
