"""Forward hooks that only live inside a ``with`` block, also when it raises."""
from __future__ import annotations

import logging

import torch
from torch import nn

from datafree.errors import DatafreeError

log = logging.getLogger("datafree")


def require_hookable(model: nn.Module, what: str) -> None:
    """Forward hooks cannot attach to TorchScript modules: say so before anything else fails."""
    if any(isinstance(m, torch.jit.ScriptModule) for m in model.modules()):
        raise DatafreeError(
            f"{what} needs forward hooks, which cannot attach to a TorchScript teacher: use synthesizer=dfad "
            "(no BatchNorm prior), or load the teacher from its Python class and state dict (teacher.source=module)."
        )


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm1d/2d/3d and SyncBatchNorm (all subclass _BatchNorm) that tracks running statistics."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
            and m.running_mean is not None]


def untracked_batchnorm_layers(model: nn.Module) -> list[str]:
    """Names of BatchNorm layers without running statistics (track_running_stats=False): nothing to match."""
    return [n for n, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and (not m.track_running_stats or m.running_mean is None)]


def check_batchnorm_teacher(model: nn.Module, what: str = "the BatchNorm-statistics prior") -> None:
    """Refuse a teacher whose statistics cannot be matched, once, before any work; note skipped layers."""
    require_hookable(model, what)
    try:
        BatchNormStatistics(model)
    except DatafreeError as error:
        raise DatafreeError(f"{what} cannot be used: {error}") from None
    skipped = untracked_batchnorm_layers(model)
    if skipped:
        log.info("BatchNorm layers without running statistics are skipped by %s: %s", what, ", ".join(skipped[:8]))


def check_bn_distance(distance, key: str = "the BatchNorm-statistics distance") -> str:
    """``distance`` if it is one :class:`BatchNormStatistics` knows; else one line naming ``key`` and the choices."""
    if distance not in BatchNormStatistics.DISTANCES:
        raise DatafreeError(f"{key} must be raw (DeepInversion's distance, in the teacher's own scale) or relative "
                            f"(in the teacher's own units, the same scale for every teacher), got {distance!r}.")
    return distance


class _ChannelStats(torch.autograd.Function):
    """Per-channel mean and (population) variance of an (N, C, ...) tensor, in float32, with a hand-written backward.

    On CUDA the forward is the fused kernel SyncBatchNorm uses (``torch.batch_norm_stats``: one pass, any
    memory layout, bf16 read as it is); autograd through ``var_mean`` would instead copy every activation to
    float32 and run a slow strided Welford reduction, which made these statistics the costliest part of a
    generator step. On the CPU, where ``batch_norm_stats`` does not exist, it is the kernel with which BatchNorm
    updates its running statistics (``batch_norm_update_stats``: the mean and the population variance, nothing
    else written): on a 2-core machine 3-4x faster than ``var_mean`` over (N, H, W) on NCHW activations and
    11-20x on channels-last ones (with ``var_mean`` the demo's statistics cost nearly as much as its convolutions).
    The backward is one fused multiply-add in the input's dtype:
    d/dx = (g_mean + 2 g_var (x - mean)) / m = a x + b, with per-channel a, b.
    """

    _EPS = 1e-12  # batch_norm_stats returns 1 / sqrt(var + eps); var comes back exactly enough for any real layer

    @staticmethod
    def forward(ctx, x):
        if x.is_cuda:
            mean, invstd = torch.batch_norm_stats(x, _ChannelStats._EPS)
            mean, var = mean.float(), invstd.float().pow(-2) - _ChannelStats._EPS
        else:
            mean, var = torch.batch_norm_update_stats(x.float(), None, None, 0.0)
        ctx.save_for_backward(x, mean)
        return mean, var

    @staticmethod
    def backward(ctx, g_mean, g_var):
        x, mean = ctx.saved_tensors
        m = x.numel() // x.shape[1]
        shape = (1, x.shape[1]) + (1,) * (x.dim() - 2)
        g_mean = torch.zeros_like(mean) if g_mean is None else g_mean
        g_var = torch.zeros_like(mean) if g_var is None else g_var
        a = (2.0 / m) * g_var
        b = g_mean / m - a * mean
        return torch.addcmul(b.to(x.dtype).view(shape), a.to(x.dtype).view(shape), x)


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (mean, population variance) of ``x`` over every dimension but the second, in float32."""
    return _ChannelStats.apply(x)


class BatchNormStatistics:
    """Measures how far the batch statistics at each BatchNorm input are from its running statistics.

    Inside the ``with`` block every forward pass of ``model`` records, per BN
    layer, ``||mean_batch - running_mean||_2 + ||var_batch - running_var||_2``
    (DeepInversion's feature-distribution regulariser), in float32 whatever the
    autocast dtype (:func:`channel_stats`). :meth:`loss` sums them, with ``first_multiplier`` on the first layer.

    That ``raw`` distance carries the teacher's own scale: on real images about 10 for a CIFAR WRN-40-2, 10^2 to
    10^4 for CIFAR ResNet-34s trained a little shorter or longer, 7 x 10^5 for a briefly trained ResNet-50 at
    128 px (docs/benchmarks.md); DeepInversion's own commands weight it 10 on CIFAR and 0.01 on ImageNet.
    ``distance="relative"`` measures each layer in the teacher's own units instead: ``(||(mean_batch -
    running_mean) / s||_2 + ||(var_batch - running_var) / s^2||_2) / sqrt(C)`` with ``s^2 = running_var + eps`` per
    channel (root mean square over the C channels), averaged over the layers: 0.26-0.69 on real images and 1.15-1.46
    on uniform noise for every one of them measured. Scaling a layer's input by any per-channel factor leaves it
    unchanged, and its size does not grow with width or depth.

    With ``momentum`` > 0 (FastDFKD's statistics momentum) the batch statistics are first
    blended with a running average of earlier batches' statistics,
    ``(1 - momentum) * batch + momentum * average``, so that each batch need only move the
    average towards the teacher's statistics rather than match them alone: batches may
    differ from one another. :meth:`update_average` folds the last batch into the average
    (the first call takes it as it is). All of it stays on the device.
    """

    DISTANCES = ("raw", "relative")

    def __init__(self, model: nn.Module, first_multiplier: float = 1.0, momentum: float = 0.0, distance: str = "raw"):
        self.distance = check_bn_distance(distance)
        self.layers = batchnorm_layers(model)
        # The relative distance's per-channel factors for the mean and the variance differences (1/s and 1/s^2,
        # with the 1/sqrt(C) of the root mean square), once: a teacher's running statistics do not change, and
        # each hooked forward then costs two multiplies more than the raw distance, nothing else.
        self._units = None
        if distance == "relative":
            inverse = [(m.running_var.float() + m.eps).rsqrt() / m.running_var.numel() ** 0.5 for m in self.layers]
            self._units = [(unit, unit * unit * m.running_var.numel() ** 0.5) for unit, m in zip(inverse, self.layers)]
        if not self.layers:
            norms = sorted({type(m).__name__ for m in model.modules()
                            if isinstance(m, (nn.GroupNorm, nn.LayerNorm, nn.modules.batchnorm._BatchNorm,
                                              nn.modules.instancenorm._InstanceNorm))})
            has = f" (it normalises with {', '.join(norms)}, which keeps no running statistics)" if norms else ""
            raise DatafreeError(
                f"the teacher ({_name(model)}) has no BatchNorm layer with running statistics{has}, so there are no "
                "statistics to match: distil on images you may use (synthesizer=images synthesizer.path=DIR; not "
                "data-free), or use an adversarial synthesizer, which needs no BatchNorm (synthesizer=dfad, zskt or "
                "dafl), or set the synthesizer's bn_weight=0. On the CPU demo a LayerNorm teacher's student reached "
                "0.81 x the teacher on unlabelled images of the same kind, 0.26 x on photographs of another kind, "
                "and 0.23 x at most with the methods that need none, less with PSAQ-ViT's prior for a ViT "
                "(docs/benchmarks.md, 'A teacher without BatchNorm' and 'A prior for vision transformers')."
            )
        if not 0.0 <= momentum < 1.0:
            raise DatafreeError(f"the BatchNorm-statistics momentum must be in [0, 1), got {momentum}.")
        # The first BN layer of each ensemble member gets the multiplier, so members are treated alike.
        members = getattr(model, "members", None)
        firsts = [batchnorm_layers(m)[:1] for m in members] if isinstance(members, nn.ModuleList) else [self.layers[:1]]
        first_ids = {id(layer) for group in firsts for layer in group}
        self._first = [id(layer) in first_ids for layer in self.layers]
        self.first_multiplier = float(first_multiplier)
        self.momentum = float(momentum)
        self._handles: list = []
        self._losses: list[torch.Tensor | None] = [None] * len(self.layers)
        self._batch: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(self.layers)
        if self.momentum:
            # Running average of batch means and variances; the blend weight is 0 until a first batch is in.
            self._average = [(torch.zeros_like(m.running_mean, dtype=torch.float32),
                              torch.zeros_like(m.running_var, dtype=torch.float32)) for m in self.layers]
            self._blend = torch.zeros((), device=self.layers[0].running_mean.device)

    def _hook(self, index: int):
        def record(module, inputs, output):
            mean, var = channel_stats(inputs[0])
            if self.momentum:
                self._batch[index] = (mean, var)
                average_mean, average_var = self._average[index]
                mean = torch.lerp(mean, average_mean, self._blend)
                var = torch.lerp(var, average_var, self._blend)
            mean, var = mean - module.running_mean, var - module.running_var
            if self._units is not None:  # relative: in the teacher's standard deviations, RMS over channels
                mean_unit, var_unit = self._units[index]
                mean, var = mean * mean_unit, var * var_unit
            self._losses[index] = torch.linalg.vector_norm(mean, 2) + torch.linalg.vector_norm(var, 2)

        return record

    @torch.no_grad()
    def update_average(self) -> None:
        """Fold the statistics of the last batch seen into the running average (``momentum`` > 0 only)."""
        if not self.momentum:
            return
        if any(batch is None for batch in self._batch):
            raise RuntimeError("BatchNormStatistics.update_average() called before a forward pass inside the with block")
        weight = 1.0 - self._blend  # 1 for the first batch: the average starts at it
        for (mean, var), (average_mean, average_var) in zip(self._batch, self._average):
            average_mean.lerp_(mean.detach(), weight)
            average_var.lerp_(var.detach(), weight)
        self._blend.fill_(self.momentum)

    def state_dict(self) -> dict:
        return {"average": self._average, "blend": self._blend} if self.momentum else {}

    def load_state_dict(self, state: dict) -> None:
        if not self.momentum or not state:
            return
        for (mean, var), (saved_mean, saved_var) in zip(self._average, state["average"]):
            mean.copy_(saved_mean)
            var.copy_(saved_var)
        self._blend.copy_(state["blend"])

    def __enter__(self) -> "BatchNormStatistics":
        self._handles = [layer.register_forward_hook(self._hook(i)) for i, layer in enumerate(self.layers)]
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._losses = [None] * len(self.layers)

    def loss(self) -> torch.Tensor:
        total = None
        for value, first in zip(self._losses, self._first):
            if value is None:
                continue
            term = self.first_multiplier * value if first else value
            total = term if total is None else total + term
        if total is None:
            raise RuntimeError("BatchNormStatistics.loss() called before a forward pass inside the with block")
        return total if self._units is None else total / len(self.layers)


def resolve_layers(model: nn.Module, names: list[str], who: str) -> list[nn.Module]:
    """Sub-modules by name. Names are those of the user's network (``layer3``, ``features.12``); the
    wrapper's own prefix (``model.layer3``) is accepted too."""
    require_hookable(model, f"tapping {who} layers")
    modules = dict(model.named_modules())
    inner = getattr(model, "model", None)
    if isinstance(inner, nn.Module):
        modules.update({n: m for n, m in inner.named_modules() if n and n not in modules})
    missing = [n for n in names if n not in modules]
    if missing:
        import difflib

        listed = [n for n in modules if n and not n.startswith("model.")] or [n for n in modules if n]
        close = sorted({c for n in missing for c in difflib.get_close_matches(n, listed, n=3)})
        raise DatafreeError(
            f"{who} layer(s) {missing} not found in {_name(model)}: choose names from its named_modules()"
            f"{', e.g. ' + str(close) if close else ''} (the first few: {listed[:8]})."
        )
    return [modules[n] for n in names]


def _name(model: nn.Module) -> str:
    inner = getattr(model, "model", None)
    return type(inner if isinstance(inner, nn.Module) else model).__name__


class FeatureCapture:
    """Keeps the outputs of named sub-modules during forward passes inside the ``with`` block."""

    def __init__(self, model: nn.Module, names: list[str], who: str = "model"):
        self.modules = resolve_layers(model, list(names), who)
        self.features: list[torch.Tensor | None] = [None] * len(names)
        self._handles: list = []

    def __enter__(self) -> "FeatureCapture":
        def make(i):
            def record(module, inputs, output):
                self.features[i] = output

            return record

        self._handles = [m.register_forward_hook(make(i)) for i, m in enumerate(self.modules)]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


class PenultimateFeatures:
    """Keeps the input of the model's last ``nn.Linear`` (its classifier: the penultimate features) during forward
    passes inside the ``with`` block, until :meth:`take` or the next pass.

    ``what`` reads them and ``fix`` is what to change for a model without an ``nn.Linear``.
    """

    def __init__(self, model: nn.Module, what: str, fix: str):
        linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise DatafreeError(f"{what} reads the input of the network's final nn.Linear, but {_name(model)} has "
                                f"none: {fix}")
        self.name, self.layer = linears[-1]
        self.features: torch.Tensor | None = None
        self._handle = None

    def __enter__(self) -> "PenultimateFeatures":
        def record(module, inputs):
            self.features = inputs[0]

        self._handle = self.layer.register_forward_pre_hook(record)
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.remove()
        self._handle = None

    def take(self) -> torch.Tensor:
        """The features of the last pass as (N, D) float32, let go of by the capture."""
        if self.features is None:
            raise RuntimeError("PenultimateFeatures.take() before a forward pass inside the with block")
        features, self.features = self.features, None
        return features.float().flatten(1)
