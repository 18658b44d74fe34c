"""Weight pools: z-vectors, which layers are pooled, projection onto the pool, and the retraining hook.

A *z-vector* is 8 consecutive input-channel weights of one filter at one kernel position:
``W[o, 8g:8g+8, y, x]``. Vectors of a conv weight ``W[out, in, kh, kw]`` are ordered o slowest, then y, x,
g (``W.permute(0, 2, 3, 1).reshape(-1, 8)``); a linear weight ``W[out, in]`` is treated as
``[out, 1, 1, in]``, so its vectors are 8 consecutive input features.

Projection (spec section 6.2): every vector is replaced by the pool vector of highest cosine
similarity (first index on ties), the pool vector itself with no scale. During retraining the
replacement happens in every forward pass and the gradient flows straight through to the latent
weights (``w + (p - w).detach()``); the pool is a frozen buffer.

Batched projection: :func:`attach` also puts a forward pre-hook on the model that, once per forward
pass, concatenates the z-vectors of all pooled layers and projects them with one normalised matrix
product and one argmax (:func:`project_layers`); each layer's parametrization then returns its slice
of that result, and a forward hook drops it afterwards. Reading ``layer.weight`` outside the model's
forward (or calling a layer on its own) projects that layer alone: same values, same gradients.
The projection always runs in fp32, also under autocast (bf16 cosines would pick wrong neighbours).

Pool scale (``pool_scale``, not in the paper): with ``"layer"`` or ``"channel"`` each pooled layer also
has one scale (``"layer"``) or one per output channel (``"channel"``), and its projected weight is
``s · p`` instead of ``p``. The scale is computed, not learned: in every forward pass it is the
least-squares fit of the scaled pool vectors to the latent weights, ``s = Σ <w_i, p_i> / Σ |p_i|²``
over the layer's (or the channel's) z-vectors (0 where every ``p_i`` is zero); the gradient still flows
straight through to the latent weights. The assignment stays the cosine one (a positive scale does not
change it). The k-means that builds such a pool normalises each layer's (channel's) z-vectors to unit
RMS norm first (:func:`normalise`), so that the pool holds shapes and the scale holds each layer's
magnitude. At deployment the scale folds into the requantization (``acc · Δ_act · Δ_lut · s + bias``).

Learned pool scale (``"layer_learned"`` / ``"channel_learned"``): the same scales and the same
normalised k-means, but each scale is a parameter of the layer's parametrization (``...weight.0.scale``),
initialised with the least-squares fit when the pool is attached (or with given scales, e.g. a
checkpoint's) and then trained by gradient with the rest of the network (the weight is ``s · p``; the
latent weights still get the straight-through gradient). It deploys exactly like the fitted one.
The scale's gradient is multiplied by ``min(1, SCALE_STEP / Σ|p_i|²)`` over its group's pool vectors
when the pool is attached (:func:`scale_step`): the loss's curvature along one scale is that of all
its group's weights together, so plain SGD moved a layer's scale |P|² times faster than the same step
on its weights (11,875x for mlp3's first layer) and diverged on mlp3 (seed 1, 40 epochs at lr 0.05).

Soft assignment (``pool_assign: soft``, not in the paper; the paper's is ``"hard"``): while retraining,
each z-vector ``w`` is replaced by the softmax-weighted mean of the pool vectors ``Σ_k a_k p_k`` with
``a = softmax(cos(w, p_k) / τ)`` instead of its nearest pool vector, and the pool itself is a parameter
trained by gradient with the network (:class:`SoftAssignment`, as in DKM, Cho et al. 2022). The
gradient reaches the latent weights through the softmax, not straight through. τ falls geometrically
from ``tau[0]`` to ``tau[1]`` over the retraining's steps (:meth:`SoftAssignment.advance`), so the
mixture hardens into the nearest vector. Whenever the model is evaluated (eval mode, or no gradient),
the projection is the hard one onto the trained pool, exactly what deploys; after retraining the trained
pool replaces the k-means one (indices, scales, checkpoint, tables). Scales work as with ``"hard"``: a
fitted one is refitted to the soft projection (no gradient through it), a learned one multiplies it.
Pool vector ``k``'s gradient is multiplied by ``min(1, POOL_STEP / n_k)``, ``n_k = Σ_i a_ik`` the soft
count of z-vectors it stands for in the last training pass: like a learned scale's, its loss curvature
is that of all those vectors together, so plain SGD moved it n_k times as far as one weight (about 5,400
for resnet_14's 346,112 vectors and K = 64), and the demo's resnet_10 (K = 32) and resnet_14 (K = 32, 64)
fell to chance.
"""

from __future__ import annotations

import fnmatch

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from wp import WPError

VECTOR = 8  # z-vector length
SCALES = ("none", "layer", "channel", "layer_learned", "channel_learned")
# pool_scale: no scale (the paper), one per layer, one per output channel; fitted, or "_learned" by gradient
LEARNED = "_learned"
SCALE_STEP = 1000.0  # a learned scale's gradient is scaled by min(1, SCALE_STEP / Σ|p_i|²) (module docstring)
ASSIGNS = ("hard", "soft")  # pool_assign: nearest vector, frozen pool (the paper); softmax mixture, trained pool
POOL_STEP = 100.0  # soft assignment: pool vector k's gradient is scaled by min(1, POOL_STEP / n_k) (module docstring)


def is_poolable(module: nn.Module, pool_fc: bool = False) -> bool:
    """A conv is poolable when it is not grouped/depthwise and its input channels divide into 8s."""
    if isinstance(module, nn.Conv2d):
        return module.groups == 1 and module.in_channels % VECTOR == 0
    if isinstance(module, nn.Linear):
        return pool_fc and module.in_features % VECTOR == 0
    return False


def layer_kind(module: nn.Module) -> str:
    """``linear`` or ``conv{kh}x{kw}``: the kind a layer selection names (``conv`` names every conv)."""
    if isinstance(module, nn.Linear):
        return "linear"
    kh, kw = module.kernel_size
    return f"conv{kh}x{kw}"


def poolable_layers(model: nn.Module) -> dict[str, str]:
    """Every layer that can share the pool, by name, with its kind: each poolable conv except the first
    conv of the network, and each linear layer whose input size divides into 8s."""
    out, first_conv_seen = {}, False
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            is_first = not first_conv_seen
            first_conv_seen = True
            if is_first:
                continue
        if is_poolable(module, pool_fc=True):
            out[name] = layer_kind(module)
    return out


def _kind_matches(kind: str, wanted: str) -> bool:
    return kind == wanted or (wanted == "conv" and kind.startswith("conv"))


def pooled_layers(model: nn.Module, pool_fc: bool = False, selection: dict | None = None, network: str = "network") -> list[str]:
    """Names of the layers that share the pool (the k-means set is exactly this set).

    Default: every poolable conv except the first conv of the network, plus linear layers when
    ``pool_fc``. ``selection`` (config ``pooled_layers.<network>``) narrows it: ``pool_fc`` (overrides
    the argument), ``include_kinds`` / ``exclude_kinds`` (``conv``, ``conv3x3``, ``conv1x1``, ...: which
    convs), ``include`` / ``exclude`` (module-name glob patterns, e.g. ``*downsample*``: only the
    layers matching an include pattern, none matching an exclude pattern). A pattern or kind that
    matches none of the network's poolable layers is an error naming them."""
    selection = selection or {}
    candidates = poolable_layers(model)

    def unmatched(what: str, value: str) -> WPError:
        listed = ", ".join(f"{n} ({k})" for n, k in candidates.items()) or "none"
        return WPError(f"pooled_layers.{network}: {what} {value!r} matches none of its poolable layers: {listed}; "
                       f"fix the {what} in the config")

    for key in ("include_kinds", "exclude_kinds"):
        for wanted in selection.get(key) or []:
            if not any(_kind_matches(k, wanted) for k in candidates.values() if k != "linear"):
                raise unmatched("kind", wanted)
    for key in ("include", "exclude"):
        for pattern in selection.get(key) or []:
            if not any(fnmatch.fnmatchcase(n, pattern) for n in candidates):
                raise unmatched("pattern", pattern)
    with_fc = selection.get("pool_fc", pool_fc)
    names = []
    for name, kind in candidates.items():
        if kind == "linear":
            if not with_fc:
                continue
        else:
            if selection.get("include_kinds") and not any(_kind_matches(kind, w) for w in selection["include_kinds"]):
                continue
            if any(_kind_matches(kind, w) for w in selection.get("exclude_kinds") or []):
                continue
        if selection.get("include") and not any(fnmatch.fnmatchcase(name, p) for p in selection["include"]):
            continue
        if any(fnmatch.fnmatchcase(name, p) for p in selection.get("exclude") or []):
            continue
        names.append(name)
    return names


def to_vectors(weight: torch.Tensor) -> torch.Tensor:
    """Weight (conv 4-D or linear 2-D) → (n, 8) z-vectors in the order o, y, x, g."""
    if weight.dim() == 2:
        weight = weight[:, :, None, None]
    return weight.permute(0, 2, 3, 1).reshape(-1, VECTOR)


def from_vectors(vectors: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Inverse of :func:`to_vectors` for a weight of ``shape``. A conv weight comes back
    channels_last (a view of ``vectors`` when they are contiguous: no copy)."""
    if len(shape) == 2:
        out_f, in_f = shape
        return vectors.reshape(out_f, 1, 1, in_f).permute(0, 3, 1, 2).reshape(out_f, in_f)
    out_c, in_c, kh, kw = shape
    return vectors.reshape(out_c, kh, kw, in_c).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)


def check_scale(mode: str) -> str:
    if mode not in SCALES:
        raise WPError(f"unknown pool scale {mode!r}: use one of {', '.join(SCALES)}")
    return mode


def check_assign(mode: str) -> str:
    if mode not in ASSIGNS:
        raise WPError(f"unknown pool assignment {mode!r}: use one of {', '.join(ASSIGNS)}")
    return mode


def is_learned(mode: str) -> bool:
    """Whether ``mode`` is a learned pool scale (a parameter trained by gradient, not refitted)."""
    return check_scale(mode).endswith(LEARNED)


def scale_groups(module: nn.Module, mode: str) -> int | None:
    """How many scales a pooled layer has: None (``"none"``), 1 (``"layer"``) or its output channels
    (``"channel"``). The layer's z-vectors (order o, y, x, g) split into that many equal, contiguous groups."""
    if check_scale(mode) == "none":
        return None
    if mode.removesuffix(LEARNED) == "layer":
        return 1
    return module.out_channels if isinstance(module, nn.Conv2d) else module.out_features


def _group_sums(a: torch.Tensor, b: torch.Tensor, groups: int) -> torch.Tensor:
    """``Σ <a_i, b_i>`` over each of ``groups`` equal, consecutive groups of rows. ``(groups,)``."""
    return (a * b).sum(1).reshape(groups, -1).sum(1)


def fit_scale(vectors: torch.Tensor, projected: torch.Tensor, groups: int) -> torch.Tensor:
    """Per group of consecutive z-vectors, the least-squares scale ``s`` of ``s · projected`` to
    ``vectors``: ``Σ <v_i, p_i> / Σ |p_i|²`` (0 where the group's ``p_i`` are all zero). ``(groups,)``."""
    dots = _group_sums(vectors, projected, groups)
    norms = _group_sums(projected, projected, groups)
    return torch.where(norms > 0, dots / norms.clamp(min=torch.finfo(norms.dtype).tiny), torch.zeros_like(dots))


def scaled(projected: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """``projected`` (n, 8) with each of ``scale.numel()`` equal groups of rows multiplied by its scale."""
    if scale is None:
        return projected
    return (projected.reshape(scale.numel(), -1, VECTOR) * scale.to(projected.dtype).reshape(-1, 1, 1)).reshape(-1, VECTOR)


def normalise(vectors: torch.Tensor, groups: int) -> torch.Tensor:
    """``vectors`` with each of ``groups`` equal, consecutive groups divided by its RMS vector norm
    (groups of zeros left as they are): what k-means clusters for a scaled pool."""
    v = vectors.reshape(groups, -1, VECTOR)
    rms = v.square().sum(2).mean(1).sqrt()
    return (v / torch.where(rms > 0, rms, torch.ones_like(rms)).reshape(-1, 1, 1)).reshape(-1, VECTOR)


def nearest(vectors: torch.Tensor, pool_unit: torch.Tensor) -> torch.Tensor:
    """Index of the highest cosine similarity to each vector among the unit-length ``pool_unit``
    rows (first on ties): one matrix product and one argmax."""
    return (F.normalize(vectors, dim=1) @ pool_unit.T).argmax(dim=1)


def assign(vectors: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    """Index of the pool vector with the highest cosine similarity to each vector (first on ties)."""
    return nearest(vectors, F.normalize(pool, dim=1))


def project(weight: torch.Tensor, pool: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace every z-vector of ``weight`` by its nearest pool vector; return (projected, indices)."""
    idx = assign(to_vectors(weight), pool.to(weight.dtype))
    return from_vectors(pool.to(weight.dtype)[idx], weight.shape), idx


def _with_fitted_scales(vectors: torch.Tensor, projected: torch.Tensor, sizes, groups) -> torch.Tensor:
    """``projected`` with each layer's slice (``sizes``) times its fitted scales where ``groups`` gives
    them (:func:`fit_scale` to the latent ``vectors``; the scale carries no gradient)."""
    if groups is None or all(g is None for g in groups):
        return projected
    parts = zip(vectors.split(sizes), projected.split(sizes), groups)
    return torch.cat([p if g is None else scaled(p, fit_scale(v.detach(), p.detach(), g)) for v, p, g in parts])


class _StraightThrough(torch.autograd.Function):
    """Forward: each z-vector replaced by its nearest pool vector, exactly (times its layer's or
    channel's fitted scale where ``groups`` gives the layers' scale groups). Backward: the gradient
    passes to the latent vectors unchanged."""

    @staticmethod
    def forward(ctx, vectors: torch.Tensor, pool: torch.Tensor, pool_unit: torch.Tensor, sizes=None,
                groups=None) -> torch.Tensor:
        return _with_fitted_scales(vectors, pool[nearest(vectors, pool_unit)], sizes, groups)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None, None, None, None


class SoftAssignment(nn.Module):
    """``pool_assign: soft`` (module docstring): the trained pool (a parameter, started at the k-means
    pool) and the temperature schedule, ``τ = tau[0] · (tau[1] / tau[0])^min(1, steps / total_steps)``.
    The step count is a buffer, so a resumed retraining continues the schedule where it stopped."""

    def __init__(self, pool: torch.Tensor, tau: tuple[float, float], total_steps: int):
        super().__init__()
        if not (len(tau) == 2 and all(t > 0 for t in tau)):
            raise WPError(f"pool_assign_tau must be two temperatures above 0 (start, end), not {list(tau)}")
        self.pool = nn.Parameter(pool.detach().clone().float())
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.tau_start, self.tau_end, self.total_steps = float(tau[0]), float(tau[1]), max(1, int(total_steps))
        self.counts: torch.Tensor | None = None  # n_k of the last mixture, for the pool's gradient step
        self.pool.register_hook(self._step)

    def _step(self, grad: torch.Tensor) -> torch.Tensor:
        """Pool vector k's gradient times ``min(1, POOL_STEP / n_k)`` (module docstring)."""
        if self.counts is None:
            return grad
        return grad * (POOL_STEP / self.counts.clamp(min=POOL_STEP)).to(grad.dtype)[:, None]

    def tau(self) -> float:
        t = min(1.0, int(self.steps) / self.total_steps)
        return self.tau_start * (self.tau_end / self.tau_start) ** t

    @torch.no_grad()
    def advance(self) -> None:
        """One optimizer step done (``fit``'s ``on_step``)."""
        self.steps += 1

    def mix(self, vectors: torch.Tensor) -> torch.Tensor:
        """Each vector's softmax(cos / τ)-weighted mean of the pool vectors, with gradient to both."""
        att = torch.softmax(F.normalize(vectors, dim=1) @ F.normalize(self.pool, dim=1).T / self.tau(), dim=1)
        self.counts = att.detach().sum(0)
        return att @ self.pool


def project_layers(latents: list[torch.Tensor], pool: torch.Tensor, pool_unit: torch.Tensor,
                   groups: list[int | None] | None = None,
                   learned: list[torch.Tensor | None] | None = None,
                   soft: SoftAssignment | None = None) -> list[torch.Tensor]:
    """The projected weight of each latent weight, all layers in one matrix product + argmax, with a
    straight-through gradient to every latent weight. The z-vectors are concatenated (a view per
    channels_last conv weight), projected together and split back; concatenation, split and reshapes
    only move numbers, so values and gradients equal projecting each layer alone. ``groups``: per
    layer its number of fitted scales (:func:`scale_groups`; None: none fitted); ``learned``: per layer
    its learned scale parameter or None (the projection times it, with its gradient); ``soft``: the
    soft assignment (module docstring) whose trained pool replaces ``pool``, mixed while it trains with
    gradient, else hard. Runs in fp32 even inside an autocast region."""
    with torch.autocast(pool.device.type, enabled=False):
        vectors = torch.cat([to_vectors(w) for w in latents])
        sizes = [w.numel() // VECTOR for w in latents]
        groups = None if groups is None else tuple(groups)
        if soft is not None and soft.training and torch.is_grad_enabled():
            projected = _with_fitted_scales(vectors, soft.mix(vectors), sizes, groups)
        else:
            if soft is not None:
                pool = soft.pool.detach()
                pool_unit = F.normalize(pool, dim=1)
            projected = _StraightThrough.apply(vectors, pool, pool_unit, sizes, groups)
        parts = projected.split(sizes)
        learned = learned or [None] * len(latents)
        return [from_vectors(scaled(part, s), w.shape) for part, w, s in zip(parts, latents, learned)]


class PoolProjection(nn.Module):
    """Parametrization: the weight seen by the layer is the latent weight projected onto the pool,
    with a straight-through gradient to the latent weight. Inside the model's forward it returns the
    projection the model's pre-hook computed for all pooled layers at once (``batched``)."""

    def __init__(self, pool: torch.Tensor, groups: int | None = None, learned: torch.Tensor | None = None,
                 soft: SoftAssignment | None = None):
        super().__init__()
        self.register_buffer("pool", pool.detach().clone(), persistent=False)
        self.register_buffer("pool_unit", F.normalize(self.pool, dim=1), persistent=False)
        # a learned scale replaces the fitted one: the parameter, trained with the network
        self.scale = None if learned is None else nn.Parameter(learned.detach().clone().float())
        self.groups = groups if learned is None else None
        # the soft assignment every pooled layer shares (one module; each layer's state_dict lists it)
        self.soft = soft
        self.batched: torch.Tensor | None = None

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        if self.batched is not None:
            return self.batched
        return project_layers([latent], self.pool, self.pool_unit, [self.groups], [self.scale], self.soft)[0]


class _BatchedProjection:
    """The model-level hooks of one :func:`attach`: before the model's forward, project all its
    pooled layers together and hand each parametrization its weight; after it, drop them. Latent
    weights are looked up at every call, so moving or reloading the model cannot leave them stale."""

    def __init__(self, layers: list[nn.Module]):
        self.layers = layers

    def weights(self) -> list[torch.Tensor]:
        first = self.layers[0].parametrizations.weight[0]
        latents = [m.parametrizations.weight.original for m in self.layers]
        groups = [m.parametrizations.weight[0].groups for m in self.layers]
        learned = [m.parametrizations.weight[0].scale for m in self.layers]
        return project_layers(latents, first.pool, first.pool_unit, groups, learned, first.soft)

    def fill(self, module: nn.Module, args: tuple) -> None:
        for layer, weight in zip(self.layers, self.weights()):
            layer.parametrizations.weight[0].batched = weight

    def clear(self, module: nn.Module, args: tuple, output) -> None:
        for layer in self.layers:
            layer.parametrizations.weight[0].batched = None


def model_vectors(model: nn.Module, layers: list[str], scale: str = "none") -> tuple[torch.Tensor, list[int]]:
    """All z-vectors of ``layers`` concatenated in the given order, and the vector count per layer;
    with a pool ``scale`` each layer's (channel's) vectors normalised to unit RMS norm (:func:`normalise`)."""
    modules = dict(model.named_modules())
    parts = []
    for name in layers:
        v = to_vectors(_latent_weight(modules[name]).detach()).float()
        groups = scale_groups(modules[name], scale)
        parts.append(v if groups is None else normalise(v, groups))
    return torch.cat(parts), [len(p) for p in parts]


def _latent_weight(module: nn.Module) -> torch.Tensor:
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight


def attach(model: nn.Module, pool: torch.Tensor, layers: list[str], scale: str = "none",
           init_scales: dict[str, torch.Tensor] | None = None, soft: SoftAssignment | None = None) -> nn.Module:
    """Make ``layers`` of ``model`` use the frozen ``pool`` in every forward pass (in place): one
    parametrization per layer (the state dict keeps each latent weight as
    ``<layer>.parametrizations.weight.original``) and the model hooks that batch their projection.
    ``scale``: the pool scale (module docstring), fitted anew in every forward pass, or learned
    (``*_learned``): then initialised from ``init_scales[layer]`` where given, else by least squares, its
    gradient multiplied by :func:`scale_step`. ``soft``: the soft assignment (module docstring) all
    ``layers`` share, started at ``pool`` (:func:`trained_pool` reads the pool it ends with)."""
    modules = dict(model.named_modules())
    device = next(model.parameters()).device
    pool = pool.to(device)
    if soft is not None:
        soft.to(device)
    for name in layers:
        groups = scale_groups(modules[name], scale)
        learned = step = None
        if is_learned(scale):
            v, p = _projected(modules[name], pool)
            given = (init_scales or {}).get(name)
            learned = fit_scale(v, p, groups) if given is None else given.to(device)
            step = scale_step(p, groups)
        projection = PoolProjection(pool, groups, learned, soft)
        parametrize.register_parametrization(modules[name], "weight", projection)
        if step is not None:
            projection.scale.register_hook(lambda grad, step=step: grad * step)
    if layers:
        batch = _BatchedProjection([modules[name] for name in layers])
        handles = [model.register_forward_pre_hook(batch.fill),
                   model.register_forward_hook(batch.clear, always_call=True)]
        model._wp_pool = [*getattr(model, "_wp_pool", []), (batch, handles)]
    return model


def projected_weights(model: nn.Module) -> list[torch.Tensor]:
    """The projected weights of every layer attached to ``model``, computed the way its forward
    pass does (all layers batched, with gradient); for measuring the projection's cost per step."""
    return [w for batch, _ in getattr(model, "_wp_pool", []) for w in batch.weights()]


def soft_assignment(model: nn.Module) -> SoftAssignment | None:
    """The soft assignment attached to ``model``'s pooled layers, or None (hard assignment)."""
    softs = (batch.layers[0].parametrizations.weight[0].soft for batch, _ in getattr(model, "_wp_pool", []))
    return next((soft for soft in softs if soft is not None), None)


def trained_pool(model: nn.Module, pool: torch.Tensor) -> torch.Tensor:
    """The pool ``model``'s pooled layers end with: the trained one of a soft assignment (float32, on
    the CPU, detached), else ``pool`` itself (a frozen pool)."""
    soft = soft_assignment(model)
    return pool if soft is None else soft.pool.detach().float().cpu().clone()


def detach(model: nn.Module) -> nn.Module:
    """Bake the projected weights into plain parameters and remove the projection (in place)."""
    for _, handles in getattr(model, "_wp_pool", []):
        for handle in handles:
            handle.remove()
    model.__dict__.pop("_wp_pool", None)
    for module in model.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    return model


def indices(model: nn.Module, pool: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
    """Per pooled layer, the pool index (int16, on the CPU) of each of its z-vectors (order o, y, x, g)."""
    modules = dict(model.named_modules())
    out = {}
    for name in layers:
        latent = _latent_weight(modules[name]).detach()
        out[name] = assign(to_vectors(latent), pool.to(latent.device)).to(torch.int16).cpu()
    return out


def scales(model: nn.Module, pool: torch.Tensor, layers: list[str], scale: str) -> dict[str, torch.Tensor] | None:
    """Per pooled layer its fitted scales (float32, on the CPU; 1 or one per output channel) as the
    forward pass computes them from the latent weights (a learned scale: its parameter, where the
    layer has one), or None for ``scale="none"``."""
    if check_scale(scale) == "none":
        return None
    modules = dict(model.named_modules())
    out = {}
    for name in layers:
        if parametrize.is_parametrized(modules[name], "weight") and modules[name].parametrizations.weight[0].scale is not None:
            out[name] = modules[name].parametrizations.weight[0].scale.detach().float().cpu().clone()
            continue
        v, p = _projected(modules[name], pool)
        out[name] = fit_scale(v, p, scale_groups(modules[name], scale)).cpu()
    return out


def _projected(module: nn.Module, pool: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A layer's latent z-vectors (float32, detached) and the pool vectors they project to."""
    v = to_vectors(_latent_weight(module).detach().float()).contiguous()
    return v, pool.to(v)[assign(v, pool.to(v))]


def scale_step(projected: torch.Tensor, groups: int) -> torch.Tensor:
    """The factor (one per group) a learned scale's gradient is multiplied by:
    ``min(1, SCALE_STEP / Σ|p_i|²)`` over the group's projected z-vectors (module docstring)."""
    norms = _group_sums(projected, projected, groups)
    return (SCALE_STEP / norms.clamp(min=torch.finfo(norms.dtype).tiny)).clamp(max=1.0)


def deployed_weight(pool: torch.Tensor, idx: torch.Tensor, shape, scale: torch.Tensor | None = None) -> torch.Tensor:
    """The weight of ``shape`` whose z-vectors are the pool vectors ``idx`` times their group's ``scale``
    (None: no scale): what a pooled checkpoint holds and what the LUT layer computes."""
    return from_vectors(scaled(pool[idx.long().reshape(-1)], scale), torch.Size(shape))


def bake(model: nn.Module, pool: torch.Tensor, indices: dict[str, torch.Tensor],
         layer_scales: dict[str, torch.Tensor] | None) -> None:
    """Set (in place) every pooled layer's plain weight to :func:`deployed_weight` of its indices and
    scales, so that a saved checkpoint holds exactly what :func:`wp.lutnet.check_indices` expects."""
    if layer_scales is None:
        return
    for name, idx in indices.items():
        w = model.get_submodule(name).weight
        with torch.no_grad():
            w.copy_(deployed_weight(pool.to(w), idx.to(w.device), w.shape, layer_scales[name].to(w)))
