"""Recipe keys named in a message must exist in the recipe the user ran (a message must not send them nowhere)."""
import re

from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue

RECIPES = {"distill": "distill", "train-teacher": "train_teacher", "synthesize": "synthesize", "audit": "audit"}
# data.root, trainer.loss.temperature, synthesizer.augment[0] ...; not file names (teacher.pt) nor module paths.
KEY = re.compile(r"(?<![\w./+-])((?:data|teacher|student|synthesizer|trainer)(?:\.[A-Za-z_]\w*|\[\d+\])+)")
GROUP_CHOICE = re.compile(r"(?<![\w./+-])((?:data|teacher|student|synthesizer|trainer)=\w+)")
FILE = re.compile(r"\.(pt|pth|ts|gz|tgz|tar|png|csv|yaml|log|py)$")
_ABSENT = object()


def named_keys(message: str) -> list[str]:
    return sorted({key for key in KEY.findall(message) if not FILE.search(key)})


def missing_keys(message: str, command: str, overrides) -> list[str]:
    """The recipe keys ``message`` names that the composed recipe of ``command overrides`` lacks.

    The recipe as run counts, and so does a group choice the message tells the user to make (``teacher=module``),
    made in place of the overrides of that group. Choices it offers as alternatives (``teacher=torchvision ... or
    teacher=module ...``) are made one at a time: a key counts that one of them has.
    """
    chosen = sorted(set(GROUP_CHOICE.findall(message)))
    alternatives = [[c for c in chosen if c.split("=")[0] != choice.split("=")[0]] + [choice] for choice in chosen]
    # the recipe as run counts too: a message may say what a key of it holds before telling what to choose instead
    cfgs = [_composed(command, overrides, choices) for choices in [[], *alternatives]]
    return [key for key in named_keys(message) if not any(has_key(cfg, key) for cfg in cfgs)]


def _composed(command: str, overrides, chosen):
    """The recipe of ``command overrides`` with the group choices ``chosen`` made in place of their groups' overrides."""
    replaced = tuple(choice.split("=")[0] + "." for choice in chosen)
    kept = [o for o in overrides if not o.startswith(("hydra.", "resume=", *replaced))] + chosen
    with initialize_config_module("datafree.recipes", version_base="1.3"):
        return compose(RECIPES[command], overrides=kept)


def has_key(cfg, key: str) -> bool:
    """``key`` is in the composed recipe: a value (also one still ``???``) or a node."""
    try:
        return OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=True) is not _ABSENT
    except MissingMandatoryValue:
        return True
