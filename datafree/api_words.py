"""The Python API's errors in the words of its arguments.

The loaders and the trainer are shared with the command line, so their errors name recipe keys
(``set teacher.name to one of ...``, ``lower trainer.batch_size``). Called from Python, the same
advice must name what the caller passes: ``load_teacher(name=...)``, ``distill_student(batch_size=...)``.
:func:`in_argument_words` rewrites a :class:`DatafreeError` raised inside such a call: each recipe key
of the groups the call takes (``teacher.checkpoint``, ``trainer.lr``) becomes the argument's name, a
source chosen by group (``teacher=timm``) becomes ``source='timm'``, and the message starts with the
call's name. Keys of other groups, and file names such as ``teacher.pt``, are left as they are.
"""
from __future__ import annotations

import dataclasses
import re
from contextlib import contextmanager

from datafree.errors import DatafreeError

# The node keys a teacher or student is given by (load_teacher's keyword arguments; make_student's dict keys).
NODE_KEYS = ("source", "checkpoint", "arch", "model", "name", "members", "state_key", "trust_checkpoint", "num_classes",
             "input_size", "mean", "std", "pretrained")


def _trainer_keys() -> tuple[str, ...]:
    from datafree.distill.settings import TrainerSettings

    return tuple(field.name for field in dataclasses.fields(TrainerSettings))


def argument_words(message: str, groups: dict[str, tuple[str, ...]]) -> str:
    """``message`` with each ``GROUP.KEY`` (KEY one of ``groups[GROUP]``; ``GROUP.model._target_`` too) written
    ``KEY``, and each ``GROUP=SOURCE`` written ``source='SOURCE'``. A key with sub-keys (``student.model.num_labels``)
    or hydra's ``+``/``~`` before it is left as it is: it has no argument of its own."""
    for group, keys in groups.items():
        named = "|".join(sorted(keys, key=len, reverse=True))
        message = re.sub(rf"(?<![\w.+~]){group}\.(?:(model)\._target_|({named}))(?!\.?\w)",
                         lambda m: m.group(1) or m.group(2), message)
        message = re.sub(rf"(?<![\w.+~]){group}=([A-Za-z_][\w-]*)", r"source='\1'", message)
    return message


@contextmanager
def in_argument_words(call: str, *groups: str):
    """Inside: a DatafreeError's message is rewritten for ``call`` (``load_teacher``), whose arguments are the keys
    of ``groups`` (``teacher``, ``student``: node keys; ``trainer``: the trainer recipe's keys). The error itself is
    re-raised, its type kept."""
    try:
        yield
    except DatafreeError as error:
        if error.args and isinstance(error.args[0], str) and not getattr(error, "_in_argument_words", False):
            keys = {group: _trainer_keys() if group == "trainer" else NODE_KEYS for group in groups}
            error.args = (f"{call}: {argument_words(error.args[0], keys)}", *error.args[1:])
            error._in_argument_words = True  # an inner call's words stand: an outer one does not rewrite them
        raise
