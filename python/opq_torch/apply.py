"""Finetuning under a plan: ``apply_plan`` puts Ŵ = M ∘ Q(W) on the planned parameters with
``torch.nn.utils.parametrize`` (the OPQ paper's Algorithm 1: masks and steps fixed, the
straight-through estimator ∂Ŵ/∂W = M), ``export`` writes ONNX with the parametrizations
squashed, so that ``opq compress finetuned.onnx --plan plan.safetensors`` stores exactly these
weights."""
import copy
import os
from typing import Dict, Optional

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from .errors import PlanError
from .plan import Plan, PlanLayer, load_plan


class _MaskQuantSTE(torch.autograd.Function):
    """Forward: the given Ŵ; backward: the gradient times the mask (STE through Q, Eq. 10)."""

    @staticmethod
    def forward(ctx, w, w_hat, mask):
        ctx.save_for_backward(mask)
        return w_hat

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        return grad * mask, None, None


class MaskQuant(nn.Module):
    """The parametrization of one planned weight. ``quantize=False`` is stage 1 (Ŵ = M ∘ W),
    ``True`` stage 2 (Ŵ = M ∘ Q(W)); uniform Q(w) = Δ·round(w/Δ), table Q(w) = nearest level.
    Ŵ is computed exactly (no ``w + (q − w).detach()`` rounding), so the exported weights are
    bit-for-bit Δ·code in float32, the values opq's codebook decodes to."""

    def __init__(self, layer: PlanLayer, quantize: bool = True):
        super().__init__()
        self.plan_name = layer.name
        self.quantize = quantize
        self.register_buffer("mask", torch.from_numpy(layer.mask.astype(np.float32)))
        step = layer.step if layer.codebook == "uniform" else 0.0
        self.register_buffer("step", torch.tensor(step, dtype=torch.float32))
        table = layer.table if layer.table is not None else np.zeros(0, np.float32)
        self.register_buffer("table", torch.from_numpy(np.sort(table).astype(np.float32)))

    def quantized(self, w: torch.Tensor) -> torch.Tensor:
        """Q(W) without the mask."""
        if self.table.numel() == 0:
            # torch.round ties to even where opq's Math.round ties up; it does not matter for the
            # hand-back: the export holds Δ·code exactly and opq recovers that code from it.
            return self.step * torch.round(w / self.step)
        idx = torch.bucketize(w, (self.table[1:] + self.table[:-1]) / 2).clamp_(0, self.table.numel() - 1)
        return self.table[idx]

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        v = self.quantized(w) if self.quantize else w
        # where, not mask · v: a pruned negative weight would be −0.0; "+ 0.0" turns the −0.0 of
        # round(−0.3) into +0.0 and is exact elsewhere, so zeros export as opq decodes them.
        w_hat = torch.where(self.mask.bool(), v, torch.zeros_like(v)) + 0.0
        return _MaskQuantSTE.apply(w, w_hat.detach(), self.mask)


def module_path_of_node(node: str) -> Optional[str]:
    """The module path an exported ONNX node name carries: torch.onnx.export names a node
    ``/<scope>/…/<Op>``, where a child's scope is its attribute name and a container's item is
    ``<parent>.<index>``: ``/layers/layers.3/sc/sc.0/Conv`` → ``layers.3.sc.0``."""
    parts = [p for p in node.split("/") if p]
    if len(parts) < 2:
        return None
    segs, prev = [], None
    for p in parts[:-1]:
        segs.append(p[len(prev) + 1:] if prev is not None and p.startswith(prev + ".") else p)
        prev = p
    return ".".join(segs)


def _unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


def _base_params(module: nn.Module) -> Dict[str, torch.Tensor]:
    """Parameters by their plain name (a parametrized ``x.parametrizations.weight.original`` is ``x.weight``)."""
    out = {}
    for name, p in module.named_parameters():
        out[name.replace(".parametrizations.", ".").replace(".original", "") if ".parametrizations." in name else name] = p
    return out


def match_plan(module: nn.Module, plan: Plan, names: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Plan layer name → parameter name. Tried in order: ``names[layer]``; the ONNX initializer
    name itself (torch.onnx.export keeps a parameter's name when the graph reads it directly:
    ``c1.weight``); the module path in the node name + ``.weight`` (for initializers the
    export renamed, e.g. ``onnx::Conv_203`` of a conv whose BatchNorm was folded). Raises
    PlanError UNMATCHED naming every plan layer without a parameter of its name and shape."""
    module = _unwrap(module)
    params, names = _base_params(module), names or {}
    out, problems, taken = {}, [], {}
    for layer in plan.layers:
        path = module_path_of_node(layer.node)
        tried = [c for c in (names.get(layer.name), layer.name, path and f"{path}.weight") if c]
        hit = next((c for c in tried if c in params), None)
        if hit is None:
            problems.append(f"{layer.name} (node {layer.node}, {list(layer.dims)}): no parameter named {' or '.join(tried)}")
        elif tuple(params[hit].shape) != layer.dims:
            problems.append(f"{layer.name}: parameter {hit} has shape {list(params[hit].shape)}, the plan {list(layer.dims)}")
        elif hit in taken:
            problems.append(f"{layer.name}: parameter {hit} is already matched to {taken[hit]}")
        else:
            out[layer.name] = taken[hit] = hit
    if problems:
        raise PlanError("UNMATCHED", f"{len(problems)} plan layer(s) match no parameter of {type(module).__name__}:\n  " + "\n  ".join(problems))
    return out


def mask_disagreement(w: torch.Tensor, mask: np.ndarray) -> float:
    """Fraction of weights on the wrong side of the mask's magnitude threshold. Every opq mask
    keeps exactly the weights with |w| at or above a per-layer threshold (OPQ: max(τ_i, Δ_i/2);
    APoT: the first nonzero level), so for the planned weights this is 0; weights scaled per
    channel (a BatchNorm the export folded but the module still has) give a large fraction."""
    a = w.detach().abs().cpu().numpy().ravel()
    m = mask.ravel()
    if m.all() or not m.any():
        return 0.0
    lo, hi = a[m].min(), a[~m].max()
    if lo >= hi:
        return 0.0
    tol = 1e-3 * max(float(hi), 1e-30)  # float noise of a re-derived fold
    return float(((a[m] < hi - tol).sum() + (a[~m] > lo + tol).sum()) / a.size)


def apply_plan(module: nn.Module, plan, names: Optional[Dict[str, str]] = None, quantize: bool = True, check_weights: bool = True) -> Dict[str, str]:
    """Register a :class:`MaskQuant` parametrization on every planned parameter of ``module``
    (apply it before wrapping in DistributedDataParallel). ``plan`` is a :class:`Plan` or a
    path; ``names`` maps plan layer names to parameter names where automatic matching cannot;
    ``quantize`` picks the stage (see :func:`set_stage`). With ``check_weights`` the module must
    hold the weights the plan was made from (see :func:`mask_disagreement`): PlanError
    WEIGHTS_DIFFER names every layer where over 1% of the weights disagree with the mask.
    Zeroes the pruned weights, so training starts from Ŵ's support. Returns layer → parameter."""
    plan = plan if isinstance(plan, Plan) else load_plan(plan)
    mapping = match_plan(module, plan, names)
    module = _unwrap(module)
    layers = {l.name: l for l in plan.layers}
    if check_weights:
        params = _base_params(module)
        bad = [(n, p, mask_disagreement(params[p], layers[n].mask)) for n, p in mapping.items()]
        bad = [f"{n} → {p}: {100 * f:.1f}% of the weights disagree with the mask" for n, p, f in bad if f > 0.01]
        if bad:
            raise PlanError("WEIGHTS_DIFFER", "the module does not hold the weights the plan was made from (load them first; if the "
                            "export folded BatchNorm into the convs, fold it in the module too, e.g. torch.nn.utils.fusion.fuse_conv_bn_eval):\n  " + "\n  ".join(bad))
    for layer_name, pname in mapping.items():
        owner_path, _, attr = pname.rpartition(".")
        owner = module.get_submodule(owner_path) if owner_path else module
        check_param = getattr(owner, attr)
        mq = MaskQuant(layers[layer_name], quantize).to(check_param.device)
        with torch.no_grad():
            check_param.mul_(mq.mask.to(check_param.dtype))
        parametrize.register_parametrization(owner, attr, mq)
    return mapping


def plan_parametrizations(module: nn.Module):
    """Every MaskQuant of a module (after apply_plan)."""
    return [m for m in _unwrap(module).modules() if isinstance(m, MaskQuant)]


def set_stage(module: nn.Module, stage: int) -> None:
    """Stage 1: Ŵ = M ∘ W (pruned only); stage 2: Ŵ = M ∘ Q(W) (pruned and quantized)."""
    if stage not in (1, 2):
        raise ValueError(f"stage must be 1 or 2, got {stage}")
    for m in plan_parametrizations(module):
        m.quantize = stage == 2


def squashed(module: nn.Module) -> nn.Module:
    """A copy of the module with every plan parametrization replaced by its stage-2 value
    M ∘ Q(W) as a plain parameter. The module itself is left as it is (``remove_parametrizations``
    on a deep copy would delete the property from the class the copy shares with the original)."""
    m = copy.deepcopy(_unwrap(module)).cpu().eval()
    set_stage(m, 2)
    for owner in list(m.modules()):
        if parametrize.is_parametrized(owner):
            with torch.no_grad():
                values = {attr: getattr(owner, attr).detach().clone() for attr in owner.parametrizations.keys()}
            del owner._modules["parametrizations"]
            # register_parametrization made the module an instance of a generated subclass.
            owner.__class__ = owner.__class__.__bases__[0]
            for attr, v in values.items():
                owner.register_parameter(attr, nn.Parameter(v))
    return m


def export(module: nn.Module, path: str, example_input: torch.Tensor, opset: int = 13) -> None:
    """Write ``module`` as ONNX with the plan's parametrizations squashed (always stage 2, the
    weights the .opq will hold), a dynamic batch axis, input ``input`` and output ``logits``.
    Written through a temporary file and a rename, so a failure never leaves half a file."""
    m = squashed(module)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with torch.no_grad():
            torch.onnx.export(m, example_input.cpu(), tmp, input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset, do_constant_folding=True)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
