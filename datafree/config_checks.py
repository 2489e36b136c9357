"""Types and sizes of the recipe keys that every run reads, checked before any work.

Recipes are plain YAML, so hydra accepts ``trainer.lr=abc`` as the string
'abc'; without this check it would surface as a traceback deep inside torch.
Each rule applies only where the key exists in the composed recipe.
"""
from __future__ import annotations

import re

from omegaconf import DictConfig, OmegaConf

from datafree.errors import DatafreeError
from datafree.teachers.loader import SOURCES as TEACHER_SOURCES
from datafree.utils.config_nodes import check_no_unset
from datafree.utils.run_state import flatten


def _int(low: int):
    return (f"an int >= {low}", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low)


def _number(low: float, high: float | None = None, low_open: bool = False, high_open: bool = True):
    def ok(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
            return False
        above = v > low if low_open else v >= low
        below = high is None or (v < high if high_open else v <= high)
        return above and below

    if high is None:
        what = f"a number {'>' if low_open else '>='} {low}"
    else:
        what = f"a number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    return what, ok


def _or_null(rule):
    what, ok = rule
    return f"null or {what}", lambda v: v is None or ok(v)


def _auto_or_null(rule):
    what, ok = rule
    return f"auto, null or {what}", lambda v: v in ("auto", None) or ok(v)


def _auto_or(rule):
    what, ok = rule
    return f"auto or {what}", lambda v: v == "auto" or ok(v)


BOOL = ("true or false", lambda v: isinstance(v, bool))
POSITIVE = _number(0, low_open=True)
FRACTION = _number(0, 1, high_open=False)
MOMENTUM = _number(0, 1)
# trainer.bn_momentum, teacher.train.bn_momentum (models/bn_momentum.py)
BN_MOMENTUM = ("auto, keep or a number in (0, 1]", lambda v: v in ("auto", "keep") or (
    isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1))
EMBEDDING = ("'penultimate' or 'logits'", lambda v: v in ("penultimate", "logits"))
# A path left empty (data.root=, or data.root=$UNSET in a shell) would mean the working directory.
PATH = ("a path (not empty)", lambda v: isinstance(v, str) and bool(v.strip()))
DEVICE = ("auto, cpu, cuda or cuda:N", lambda v: isinstance(v, str) and re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", v))

# key: ((what it must be, test), an example value for the message)
RULES: dict[str, tuple[tuple, str]] = {
    "seed": (_int(0), "0"),
    "device": (DEVICE, "auto"),
    "amp": (BOOL, "true"),
    "progress": (BOOL, "false"),
    "noise_baseline": (BOOL, "false"),
    "n": (_int(1), "10000"),  # synthesize
    "shard_size": (_int(1), "10000"),
    "max_draw_factor": (_number(1), "20"),
    "batch_size": (_or_null(_int(1)), "1024"),
    "draw": (("'synthesize' or 'sample'", lambda v: v in ("synthesize", "sample")), "sample"),
    "format": (("'shards', 'imagefolder' or 'both'", lambda v: v in ("shards", "imagefolder", "both")), "both"),
    "out": (PATH, "DIR"),
    "from_run": (_or_null(PATH), "RUN_DIR"),
    # audit (where null is refused with its own line: datafree.export.manifest.data_set_folder), deploy and report
    # (optional there); an empty value is refused everywhere, as a path the message names.
    "synthetic": ((PATH[0], lambda v: v is None or PATH[1](v)), "DIR"),
    "flips": (BOOL, "true"),
    "features": (BOOL, "true"),
    "pixel_threshold": (_or_null(_number(0)), "0.02"),
    "feature_threshold": (_or_null(_number(0)), "0.05"),
    "baseline_quantile": (FRACTION, "0.01"),
    "closest": (_int(1), "16"),
    "budget_mb": (_int(16), "1024"),
    "deterministic": (BOOL, "true"),
    "global_batch": (BOOL, "true"),
    "dist_timeout_s": (POSITIVE, "600"),
    "resume": (("null, true, false or the run directory to continue",
                lambda v: v is None or isinstance(v, (bool, str))), "true"),
    "run": (_or_null(PATH), "RUN_DIR"),  # deploy, report
    "checkpoint": (_or_null(PATH), "student.pt"),
    "deployed": (_or_null(PATH), "DIR"),
    "formats": (("a list of onnx, torchscript, export", lambda v: isinstance(v, list) and bool(v)
                 and all(f in ("onnx", "torchscript", "export") for f in v)), "[onnx,torchscript,export]"),
    "opset": (_int(17), "20"),
    "check_images": (_int(1), "256"),
    "max_logit_diff": (POSITIVE, "1e-3"),
    "min_agreement": (FRACTION, "0.99"),
    "int8": (BOOL, "true"),
    "calibration_images": (_int(1), "512"),
    "int8_min_agreement": (FRACTION, "0.9"),
    "int8_keep_float": (("a list of ONNX operator types", lambda v: isinstance(v, list)
                         and all(isinstance(x, str) for x in v)), "[Gemm]"),
    "int8_target_agreement": (FRACTION, "0.98"),
    "int8_float_layers": (_int(0), "8"),
    "compare_real_calibration": (BOOL, "true"),
    "eval_images": (_int(1), "10000"),
    "latency": (BOOL, "true"),
    "test_images": (_int(1), "10000"),
    "corruption_images": (_int(1), "2000"),
    "cka_images": (_int(2), "2000"),
    "bins": (_int(2), "15"),
    "min_run_time": (POSITIVE, "0.5"),
    "gpu_batch": (_int(1), "256"),
    "data.root": (_or_null(PATH), "DIR"),
    "data.path": (PATH, "DIR"),
    # null: data=none, the teacher alone; auto: an ImageFolder's class folders (jobs.count_data_classes)
    "data.num_classes": (_auto_or_null(_int(2)), "10"),
    # auto: the teacher's input size, or the images' own for train-teacher (jobs.py)
    "data.image_size": (_auto_or_null(_int(8)), "64"),
    "data.channels": (("null, 1, 3 or 4", lambda v: v is None or (not isinstance(v, bool) and v in (1, 3, 4))), "1"),
    "data.batch_size": (_int(1), "128"),
    "data.eval_batch_size": (_int(1), "1000"),
    "data.crop_padding": (_int(0), "4"),
    "data.crop": (("auto, shift or resized", lambda v: v in ("auto", "shift", "resized")), "auto"),
    "cpu_threads": (("auto or an int >= 1", lambda v: v == "auto" or (isinstance(v, int) and not isinstance(v, bool)
                                                                      and v >= 1)), "auto"),
    "teacher.checkpoint": (_or_null(PATH), "PATH"),
    "teacher.train_if_missing": (BOOL, "true"),
    "teacher.source": (("one of " + ", ".join(TEACHER_SOURCES), lambda v: v in TEACHER_SOURCES), "module"),
    "teacher.trust_checkpoint": (BOOL, "false"),
    "teacher.num_classes": (_or_null(_int(1)), "10"),
    "teacher.input_size": (("null or [channels, height, width] of positive ints", lambda v: v is None or (
        isinstance(v, list) and len(v) == 3 and all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in v))),
        "[3,32,32]"),
    "student.num_classes": (_or_null(_int(1)), "10"),
    "teacher.train.epochs": (_int(1), "30"),
    "teacher.train.lr": (_auto_or(POSITIVE), "0.1"),  # auto: jobs.teacher_lr
    "teacher.train.momentum": (MOMENTUM, "0.9"),
    "teacher.train.weight_decay": (_number(0), "5e-4"),
    "teacher.train.label_smoothing": (MOMENTUM, "0.1"),
    "teacher.train.warmup": (MOMENTUM, "0.15"),
    "teacher.train.time_budget_s": (_or_null(POSITIVE), "600"),
    "teacher.train.checkpoint_every": (_int(0), "1000"),
    "teacher.train.max_nonfinite": (_int(1), "20"),
    "teacher.train.bn_momentum": (BN_MOMENTUM, "0.1"),
    "trainer.rounds": (_int(1), "100"),
    "trainer.student_steps": (_int(0), "20"),
    "trainer.batch_size": (_auto_or(_int(1)), "256"),
    "trainer.optimizer": (("'sgd' or 'adam'", lambda v: v in ("sgd", "adam")), "sgd"),
    "trainer.lr": (POSITIVE, "0.1"),
    "trainer.warmup_steps": (_int(0), "200"),
    "trainer.momentum": (MOMENTUM, "0.9"),
    "trainer.weight_decay": (_number(0), "5e-4"),
    "trainer.decay_norm_and_bias": (BOOL, "true"),
    "trainer.replay": (FRACTION, "0.5"),
    "trainer.pool_capacity": (("auto or an int >= 0", lambda v: v == "auto" or _int(0)[1](v)), "auto"),
    "trainer.eval_every": (_int(1), "10"),
    "trainer.log_every": (_int(1), "50"),
    "trainer.time_budget_s": (_or_null(POSITIVE), "480"),
    "trainer.checkpoint_every": (_int(0), "1000"),
    "trainer.max_nonfinite": (_int(1), "20"),
    "trainer.halve_synthesis_on_oom": (BOOL, "true"),
    "trainer.cuda_graphs": (BOOL, "false"),
    "trainer.sync_batchnorm": (BOOL, "true"),
    "trainer.bn_momentum": (BN_MOMENTUM, "0.1"),
    "trainer.clip_grad_norm": (_or_null(POSITIVE), "5.0"),
    "trainer.ema_decay": (MOMENTUM, "0.999"),
    "trainer.ema_bn_batches": (_int(0), "50"),
    "trainer.attention.weight": (_number(0), "250"),
    "trainer.hint.weight": (_number(0), "1.0"),
    "trainer.similarity.weight": (_number(0), "3000"),
    "trainer.rkd.distance_weight": (_number(0), "25"),
    "trainer.rkd.angle_weight": (_number(0), "50"),
    "trainer.rkd.embedding": (EMBEDDING, "penultimate"),
    "trainer.discriminator.weight": (_number(0), "0.1"),
    "trainer.discriminator.embedding": (EMBEDDING, "logits"),
    "trainer.discriminator.optimizer": (("'adam' or 'sgd'", lambda v: v in ("adam", "sgd")), "adam"),
    "trainer.discriminator.lr": (POSITIVE, "2e-4"),
    "trainer.discriminator.momentum": (MOMENTUM, "0.9"),
    "trainer.discriminator.weight_decay": (_number(0), "0"),
    "trainer.discriminator.steps": (_int(1), "1"),
    "trainer.discriminator.every": (_int(1), "1"),
    "synthesizer.cuda_graphs": (BOOL, "false"),
    "synthesizer.batch_size": (_auto_or(_int(1)), "256"),
    "synthesizer.iterations": (_int(1), "2000"),
    "synthesizer.g_steps": (_int(1), "1"),
    "synthesizer.lr": (POSITIVE, "0.05"),
}


# What teacher.name / student.name hold, by source: a model name of the library, or (transformers) the saved folder.
NAME_EXAMPLES = {"torchvision": "mobilenet_v3_large", "timm": "efficientnet_b0"}


def _name_examples(cfg: DictConfig) -> dict[str, str]:
    """An example for teacher.name / student.name left as ??? (was "student.name=PATH" for a torchvision student)."""
    examples = {}
    for who in ("teacher", "student"):
        node = cfg.get(who)
        source = node.get("source") if isinstance(node, DictConfig) and "source" in node else None
        examples[f"{who}.name"] = NAME_EXAMPLES.get(source, "DIR")
    return examples


def check_config(cfg: DictConfig) -> dict:
    """Raise a DatafreeError naming the first bad key; returns the resolved recipe as plain containers."""
    check_no_unset(cfg, examples={**{key: example for key, (_, example) in RULES.items()}, **_name_examples(cfg)})
    if isinstance(cfg.get("trainer"), DictConfig):  # a misspelt (or +added) trainer key, before the teacher is trained
        from datafree.distill.settings import TrainerSettings  # it imports this module

        TrainerSettings.check_names(str(key) for key in cfg.trainer if key not in ("_target_", "_partial_"))
    try:
        resolved = OmegaConf.to_container(cfg, resolve=True)
    except Exception as exc:  # noqa: BLE001 - an interpolation that points nowhere
        raise DatafreeError(f"the recipe cannot be resolved ({str(exc).splitlines()[0]}): fix or remove that "
                            "${...} reference.") from None
    check_values(resolved)
    return resolved


def check_values(values: dict) -> None:
    """The rules on a nested dict of recipe values (e.g. ``{"trainer": {...}}`` from the Python API)."""
    flat = flatten(values)
    for key, ((what, ok), example) in RULES.items():
        if key in flat and not ok(flat[key]):
            value = flat[key]
            raise DatafreeError(f"{key} must be {what}, got {value!r} ({type(value).__name__}): set e.g. {key}={example}.")
