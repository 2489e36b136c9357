"""datafree: data-free and adversarial knowledge distillation.

A frozen teacher alone is turned into a small student: synthesizers invent
inputs (DeepInversion, generators), a trainer distils on them.
"""
# The API function is distill_student: a name 'distill' would hide the datafree.distill package.
from datafree.api import Distilled, distill_student, load_teacher, make_student
from datafree.errors import DatafreeError
from datafree.models import create_model, list_models
from datafree.registry import MODELS, Registry
from datafree.teachers import Teacher
from datafree.version import __version__


__all__ = ["DatafreeError", "Distilled", "MODELS", "Registry", "Teacher", "create_model", "distill_student", "list_models",
           "load_teacher", "make_student", "__version__"]
