"""Teachers (and students) as datafree sees them: checkpoints, sources, checks.

``load_teacher`` is the one way in; the submodules each do one part of it.
"""
from datafree.teachers.checkpoint import FORMAT, ClassifierInfo, read_checkpoint, save_classifier
from datafree.teachers.checks import check_agreement, check_logits, probe_logits
from datafree.teachers.loader import SOURCES, Teacher, load_classifier, load_teacher, teacher_from_config
from datafree.teachers.network import Ensemble, Normalized, freeze, network_of
from datafree.teachers.spec import DataHint

__all__ = [
    "FORMAT", "SOURCES", "ClassifierInfo", "DataHint", "Ensemble", "Normalized", "Teacher", "check_agreement",
    "check_logits", "freeze", "load_classifier", "load_teacher", "network_of", "probe_logits", "read_checkpoint",
    "save_classifier", "teacher_from_config",
]
