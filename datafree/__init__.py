"""datafree: data-free and adversarial knowledge distillation.

A frozen teacher alone is turned into a small student: synthesizers invent
inputs (DeepInversion, generators), a trainer distils on them.
"""
from datafree.errors import DatafreeError
from datafree.models import create_model, list_models
from datafree.registry import MODELS, Registry

__version__ = "0.1.0"

__all__ = ["DatafreeError", "MODELS", "Registry", "create_model", "list_models", "__version__"]
