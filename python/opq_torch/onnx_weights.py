"""Just enough ONNX to move weights into a PyTorch module without the ``onnx`` package: a
bounds-checked protobuf walk over ModelProto → GraphProto → NodeProto / TensorProto (field
numbers from onnx.proto), and ``load_onnx_weights``, which copies every Conv/Gemm weight and
bias into the module's parameter of the same name, or of the module path the node name carries."""
import struct
from typing import Dict, List, Tuple

import numpy as np
import torch
from torch import nn

from .apply import module_path_of_node
from .errors import PlanError, check

_FLOAT = 1  # TensorProto.DataType.FLOAT


def _varint(b: bytes, i: int) -> Tuple[int, int]:
    v, shift = 0, 0
    while True:
        check(i < len(b), "TRUNCATED", "onnx: a varint runs past the end")
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        if c < 0x80:
            return v, i
        shift += 7
        check(shift < 64, "CORRUPT", "onnx: a varint is longer than 10 bytes")


def _fields(b: bytes):
    """(field number, wire type, value) of one message: ints for varints, bytes for the rest."""
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 2:
            n, i = _varint(b, i)
            check(i + n <= len(b), "TRUNCATED", f"onnx: field {num} of {n} bytes runs past the end")
            v, i = b[i:i + n], i + n
        elif wt in (1, 5):
            w = 8 if wt == 1 else 4
            check(i + w <= len(b), "TRUNCATED", "onnx: a fixed field runs past the end")
            v, i = b[i:i + w], i + w
        else:
            raise PlanError("CORRUPT", f"onnx: wire type {wt}")
        yield num, wt, v


def read_onnx_graph(data: bytes) -> Tuple[List[dict], Dict[str, np.ndarray]]:
    """Nodes (``op_type``, ``name``, ``inputs``, ``outputs``) and float32 initializers of a model."""
    graph = next((v for n, wt, v in _fields(data) if n == 7 and wt == 2), None)
    check(graph is not None, "BAD_MAGIC", "onnx: no graph (not an ONNX ModelProto)")
    nodes, inits = [], {}
    for num, wt, v in _fields(graph):
        if num == 1 and wt == 2:
            node = {"inputs": [], "outputs": [], "name": "", "op_type": ""}
            for f, fw, x in _fields(v):
                if fw == 2 and f in (1, 2, 3, 4):
                    s = bytes(x).decode("utf-8", "replace")
                    if f == 1: node["inputs"].append(s)
                    elif f == 2: node["outputs"].append(s)
                    elif f == 3: node["name"] = s
                    else: node["op_type"] = s
            nodes.append(node)
        elif num == 5 and wt == 2:
            dims, dtype, name, raw, floats = [], 0, "", None, []
            for f, fw, x in _fields(v):
                if f == 1 and fw == 0: dims.append(x)
                elif f == 1 and fw == 2:
                    j = 0
                    while j < len(x):
                        d, j = _varint(x, j)
                        dims.append(d)
                elif f == 2 and fw == 0: dtype = x
                elif f == 8 and fw == 2: name = bytes(x).decode("utf-8", "replace")
                elif f == 9 and fw == 2: raw = bytes(x)
                elif f == 4 and fw == 2: floats.append(bytes(x))
                elif f == 4 and fw == 5: floats.append(bytes(x))
                elif f == 14 and fw == 0 and x == 1: raise PlanError("UNSUPPORTED", f"onnx: initializer {name or '?'} has external data")
            if dtype != _FLOAT:
                continue
            n = int(np.prod(dims, dtype=object)) if dims else 1
            buf = raw if raw is not None else b"".join(floats)
            check(len(buf) == 4 * n, "CORRUPT", f"onnx: initializer {name} has {len(buf)} bytes for dims {dims}")
            inits[name] = np.frombuffer(buf, dtype="<f4").reshape(dims).copy()
    return nodes, inits


def load_onnx_weights(module: nn.Module, path: str) -> Dict[str, str]:
    """Copy the Conv/Gemm weights and biases of an ONNX file into ``module``. Each initializer
    goes to the parameter of its own name, else to ``<module path of its node>.weight|bias``.
    Raises PlanError UNMATCHED naming every initializer without a parameter of its shape and
    every parameter left unloaded. Returns initializer → parameter name."""
    with open(path, "rb") as f:
        nodes, inits = read_onnx_graph(f.read())
    params = dict(module.named_parameters())
    mapping, problems = {}, []
    for node in nodes:
        if node["op_type"] not in ("Conv", "Gemm"):
            continue
        path_ = module_path_of_node(node["name"])
        for slot, suffix in ((1, "weight"), (2, "bias")):
            if slot >= len(node["inputs"]) or node["inputs"][slot] not in inits:
                continue
            init = node["inputs"][slot]
            target = init if init in params else f"{path_}.{suffix}" if path_ else None
            if target not in params or tuple(params[target].shape) != inits[init].shape:
                problems.append(f"{init} {list(inits[init].shape)} (node {node['name']}): no parameter {target} of that shape")
                continue
            mapping[init] = target
    for p in sorted(set(params) - set(mapping.values())):
        problems.append(f"parameter {p} is not in the ONNX file")
    if problems:
        raise PlanError("UNMATCHED", f"{path} does not fit {type(module).__name__}:\n  " + "\n  ".join(problems))
    with torch.no_grad():
        for init, p in mapping.items():
            params[p].copy_(torch.from_numpy(inits[init]))
    return mapping
