"""A short bounds-checked reader of the safetensors layout (u64 LE header length, JSON header,
data buffer), used when the ``safetensors`` package is not installed. Every length is checked
against the bytes present before anything is sliced, so a hostile header cannot make it
allocate more than the file holds. Mirrors opq's ``format/safetensors.ts``."""
import json
import struct

import numpy as np

from .errors import PlanError, check

#: Bytes per element and numpy dtype by safetensors dtype name.
DTYPES = {
    "F64": (8, "<f8"), "F32": (4, "<f4"), "F16": (2, "<f2"), "I64": (8, "<i8"), "I32": (4, "<i4"),
    "I16": (2, "<i2"), "I8": (1, "i1"), "U64": (8, "<u8"), "U32": (4, "<u4"), "U16": (2, "<u2"),
    "U8": (1, "u1"), "BOOL": (1, "?"),
}
#: Headers beyond this are refused (the reference implementation's limit).
MAX_HEADER = 100 * 1024 * 1024


def _is_uint(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def read_safetensors(data: bytes):
    """Parse safetensors bytes into ``(tensors, metadata)``: a dict name → numpy array (a copy)
    and a dict of strings. Raises PlanError TRUNCATED, TOO_LARGE, CORRUPT or UNSUPPORTED."""
    check(len(data) >= 8, "TRUNCATED", f"safetensors: {len(data)} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack_from("<Q", data, 0)
    check(n <= len(data) - 8, "TRUNCATED", f"safetensors: the header declares {n} bytes, the file has {len(data) - 8} after the length")
    check(n <= MAX_HEADER, "TOO_LARGE", f"safetensors: a {n}-byte header is over the {MAX_HEADER}-byte limit")
    try:
        header = json.loads(bytes(data[8:8 + n]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise PlanError("CORRUPT", f"safetensors: the header is not UTF-8 JSON ({e})") from None
    check(isinstance(header, dict), "CORRUPT", "safetensors: the header is not a JSON object")
    start, size = 8 + n, len(data) - 8 - n
    metadata, entries = {}, []
    for name, v in header.items():
        if name == "__metadata__":
            check(isinstance(v, dict), "CORRUPT", "safetensors: __metadata__ is not an object")
            for k, s in v.items():
                check(isinstance(s, str), "CORRUPT", f"safetensors: metadata {k!r} is not a string")
            metadata = dict(v)
            continue
        check(isinstance(v, dict) and isinstance(v.get("dtype"), str), "CORRUPT", f"safetensors: tensor {name!r} has no dtype")
        check(v["dtype"] in DTYPES, "UNSUPPORTED", f"safetensors: tensor {name!r} has dtype {v['dtype']!r}")
        shape, offs = v.get("shape"), v.get("data_offsets")
        check(isinstance(shape, list) and all(_is_uint(d) for d in shape), "CORRUPT", f"safetensors: tensor {name!r} has a bad shape")
        check(isinstance(offs, list) and len(offs) == 2 and all(_is_uint(o) for o in offs), "CORRUPT", f"safetensors: tensor {name!r} has bad data_offsets")
        b, e = offs
        check(b <= e <= size, "CORRUPT", f"safetensors: tensor {name!r} at [{b}, {e}) is outside the {size}-byte data buffer")
        width, npdt = DTYPES[v["dtype"]]
        count = 1
        for d in shape:
            count *= d
        check(count * width == e - b, "CORRUPT", f"safetensors: tensor {name!r} of shape {shape} {v['dtype']} needs {count * width} bytes, its offsets give {e - b}")
        entries.append((b, e, name, npdt, shape, count))
    pos = 0
    for b, e, name, *_ in sorted(entries, key=lambda t: (t[0], t[1])):
        check(b >= pos, "CORRUPT", f"safetensors: tensor {name!r} at [{b}, {e}) overlaps the one before it")
        check(b == pos, "CORRUPT", f"safetensors: a hole at [{pos}, {b}) before tensor {name!r}")
        pos = e
    check(pos == size, "CORRUPT", f"safetensors: {size - pos} bytes after the last tensor")
    tensors = {name: np.frombuffer(data, dtype=npdt, count=count, offset=start + b).reshape(shape).copy()
               for b, e, name, npdt, shape, count in entries}
    return tensors, metadata


def read_safetensors_any(data: bytes):
    """``(tensors, metadata)`` through the ``safetensors`` package when it is installed, else
    :func:`read_safetensors`. The package's errors become PlanError CORRUPT (or TRUNCATED /
    TOO_LARGE when its message says so)."""
    try:
        from safetensors.numpy import load  # type: ignore
    except ImportError:
        return read_safetensors(data)
    # The package's load() does not return the metadata: read it from the header the package
    # has just validated.
    try:
        tensors = load(bytes(data))
    except Exception as e:  # safetensors raises SafetensorError (a plain Exception subclass)
        msg = str(e)
        code = "TOO_LARGE" if "TooLarge" in msg else "TRUNCATED" if ("InvalidHeaderLength" in msg or "HeaderTooSmall" in msg) else "CORRUPT"
        raise PlanError(code, f"safetensors: {msg}") from None
    (n,) = struct.unpack_from("<Q", data, 0)
    metadata = json.loads(bytes(data[8:8 + n]).decode("utf-8")).get("__metadata__", {})
    return tensors, metadata
