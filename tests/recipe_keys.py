"""Recipe keys named in a message must exist in the recipe the user ran (a message must not send them nowhere)."""
import re

from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

RECIPES = {"distill": "distill", "train-teacher": "train_teacher"}
# data.root, trainer.loss.temperature, synthesizer.augment[0] ...; not file names (teacher.pt) nor module paths.
KEY = re.compile(r"(?<![\w./+-])((?:data|teacher|student|synthesizer|trainer)(?:\.[A-Za-z_]\w*|\[\d+\])+)")
FILE = re.compile(r"\.(pt|pth|ts|gz|tgz|tar|png|csv|yaml|log|py)$")
_ABSENT = object()


def named_keys(message: str) -> list[str]:
    return sorted({key for key in KEY.findall(message) if not FILE.search(key)})


def missing_keys(message: str, command: str, overrides) -> list[str]:
    """The recipe keys ``message`` names that the composed recipe of ``command overrides`` lacks."""
    kept = [o for o in overrides if not o.startswith(("hydra.", "resume="))]
    with initialize_config_module("datafree.recipes", version_base="1.3"):
        cfg = compose(RECIPES[command], overrides=kept)
    return [key for key in named_keys(message) if OmegaConf.select(cfg, key, default=_ABSENT) is _ABSENT]
