"""Reading an opq finetuning plan (``opq plan model.onnx -o plan.safetensors``).

The layout is opq's ``compressor/plan.ts``: ``__metadata__`` strings ``format`` = ``"opq-plan"``,
``plan_version`` = ``"1"``, ``opq_version``, ``model_sha256``, ``source``, ``options`` (JSON) and
``layers`` (JSON: ``name``, ``node``, ``op_type``, ``dims``, ``bits``, ``codebook``, ``kept``);
per layer ``<name>.mask`` (U8, the keep mask bit-packed LSB first) and ``<name>.step`` (F32
scalar Δ) or ``<name>.table`` (F32 levels).
"""
import json
import os
from dataclasses import dataclass, field
from typing import Optional, Union

import numpy as np

from .errors import PlanError, check
from .safetensors_io import read_safetensors_any

PLAN_FORMAT = "opq-plan"
PLAN_VERSION = "1"


@dataclass
class PlanLayer:
    """One compressed initializer: its ONNX names, shape, keep mask (bool, shaped ``dims``) and codebook."""
    name: str
    node: str
    op_type: str
    dims: tuple
    mask: np.ndarray
    kept: int
    bits: int
    codebook: str
    step: Optional[float] = None
    table: Optional[np.ndarray] = None


@dataclass
class Plan:
    """A whole plan: its layers in graph order and the header."""
    layers: list
    options: dict = field(default_factory=dict)
    model_sha256: str = ""
    opq_version: str = ""
    source: str = ""


def _corrupt(msg: str) -> PlanError:
    return PlanError("CORRUPT", f"plan: {msg}")


def _json(md: dict, key: str):
    check(key in md, "CORRUPT", f"plan: no {key} in the metadata")
    try:
        return json.loads(md[key])
    except ValueError:
        raise _corrupt(f"{key} is not JSON") from None


def load_plan(source: Union[str, os.PathLike, bytes, bytearray, memoryview]) -> Plan:
    """Read a plan from a path or bytes. Raises PlanError with the TypeScript reader's codes:
    the container's (TRUNCATED, TOO_LARGE, CORRUPT, UNSUPPORTED), BAD_MAGIC for a safetensors
    file that is not a plan, UNSUPPORTED_VERSION, CORRUPT for a mask of the wrong length, bad
    layer metadata, a missing or non-finite step or table, or a tensor no layer owns."""
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            source = f.read()
    tensors, md = read_safetensors_any(bytes(source))
    if md.get("format") != PLAN_FORMAT:
        raise PlanError("BAD_MAGIC", f"not an opq plan (metadata format {md.get('format')!r})")
    if md.get("plan_version") != PLAN_VERSION:
        raise PlanError("UNSUPPORTED_VERSION", f"plan version {md.get('plan_version')!r}, this opq_torch reads {PLAN_VERSION}")
    options, raw = _json(md, "options"), _json(md, "layers")
    check(isinstance(options, dict), "CORRUPT", "plan: options is not an object")
    check(isinstance(raw, list), "CORRUPT", "plan: layers is not an array")
    used, layers, names = set(), [], set()
    for k, r in enumerate(raw):
        check(isinstance(r, dict), "CORRUPT", f"plan: layer {k} is not an object")
        name, node, op = r.get("name"), r.get("node"), r.get("op_type")
        check(all(isinstance(x, str) for x in (name, node, op)), "CORRUPT", f"plan: layer {k}: name, node and op_type must be strings")
        check(name not in names, "CORRUPT", f"plan: layer {name} is listed twice")
        names.add(name)
        dims = r.get("dims")
        check(isinstance(dims, list) and dims and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims), "CORRUPT", f"plan: {name}: bad dims")
        bits = r.get("bits")
        check(isinstance(bits, int) and 1 <= bits <= 32, "CORRUPT", f"plan: {name}: bad bits")
        n = int(np.prod(dims, dtype=object))
        m = tensors.get(f"{name}.mask")
        check(m is not None, "CORRUPT", f"plan: {name}: no mask")
        used.add(f"{name}.mask")
        # The mask's byte length bounds n by the file size before anything of size n is made.
        if m.dtype != np.uint8 or m.shape != ((n + 7) // 8,):
            raise _corrupt(f"{name}: mask of shape {list(m.shape)} {m.dtype}, dims {dims} need U8 [{(n + 7) // 8}] ({n} weights bit-packed)")
        bitsarr = np.unpackbits(m, bitorder="little")
        check(not bitsarr[n:].any(), "CORRUPT", f"plan: {name}: mask pad bits are set")
        mask = bitsarr[:n].astype(bool).reshape(dims)
        kept = int(mask.sum())
        check(r.get("kept") == kept, "CORRUPT", f"plan: {name}: kept {r.get('kept')!r} but the mask keeps {kept}")
        layer = PlanLayer(name, node, op, tuple(dims), mask, kept, bits, r.get("codebook"))
        if layer.codebook == "uniform":
            s = tensors.get(f"{name}.step")
            check(s is not None and s.dtype == np.float32 and s.shape == (), "CORRUPT", f"plan: {name}: the step must be an F32 scalar")
            used.add(f"{name}.step")
            layer.step = float(s)
            check(np.isfinite(layer.step) and layer.step > 0, "CORRUPT", f"plan: {name}: step {layer.step} is not a positive finite number")
        elif layer.codebook == "table":
            t = tensors.get(f"{name}.table")
            check(t is not None and t.dtype == np.float32 and t.ndim == 1 and 1 <= t.shape[0] <= 65536, "CORRUPT", f"plan: {name}: the table must be F32 [K], 1 <= K <= 65536")
            used.add(f"{name}.table")
            check(np.isfinite(t).all(), "CORRUPT", f"plan: {name}: the table has a non-finite level")
            layer.table = t
        else:
            raise _corrupt(f"{name}: codebook {layer.codebook!r} is neither uniform nor table")
        layers.append(layer)
    extra = sorted(set(tensors) - used)
    check(not extra, "CORRUPT", f"plan: tensor {extra[0]!r} belongs to no layer" if extra else "")
    return Plan(layers, options, md.get("model_sha256", ""), md.get("opq_version", ""), md.get("source", ""))
