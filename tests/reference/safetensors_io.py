"""Minimal safetensors reader and writer (torch only, no `safetensors` package).

File layout (https://github.com/huggingface/safetensors):

    u64 little-endian  header length L
    L bytes            JSON header: {"__metadata__": {str: str}?,
                                     name: {"dtype": "F64", "shape": [...], "data_offsets": [begin, end]}, ...}
                       padded with spaces so that 8 + L is a multiple of 8
    data               raw little-endian tensor data; offsets are relative to the end of the header

Tensors are written contiguously in the order given, without gaps. A scalar tensor has shape []
and one element. Writes are atomic: a temporary file in the same directory, then os.replace.
"""
import json
import os
import struct
import sys
import tempfile

import torch

__all__ = ["DTYPES", "save_file", "load_file", "read_header", "serialize"]

# safetensors dtype name -> torch dtype
DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_NAMES = {v: k for k, v in DTYPES.items()}

if sys.byteorder != "little":  # pragma: no cover - every supported machine is little-endian
    raise ImportError("safetensors_io assumes a little-endian host")


def _tensor_bytes(t):
    """The raw little-endian bytes of `t` (row-major)."""
    t = t.detach().to("cpu").contiguous().reshape(-1)
    if t.numel() == 0:
        return b""
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    return t.view(torch.uint8).numpy().tobytes()  # a flat byte view, whatever the dtype


def serialize(tensors, metadata=None):
    """Return the bytes of a safetensors file holding `tensors` (name -> tensor, order kept)."""
    header = {}
    if metadata:
        md = {}
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError(f"metadata must map str to str, got {k!r}: {v!r}")
            md[k] = v
        header["__metadata__"] = md
    chunks = []
    offset = 0
    for name, t in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise ValueError(f"invalid tensor name {name!r}")
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: not a torch.Tensor")
        if t.dtype not in _NAMES:
            raise TypeError(f"{name}: dtype {t.dtype} has no safetensors name")
        data = _tensor_bytes(t)
        expected = t.numel() * t.element_size()
        assert len(data) == expected, (name, len(data), expected)
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((-(8 + len(text))) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def save_file(tensors, path, metadata=None):
    """Write `tensors` (dict name -> torch.Tensor) and optional `metadata` (str -> str) to `path`,
    atomically (temporary file in the same directory, fsync, os.replace)."""
    blob = serialize(tensors, metadata)
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _parse_header(blob, source):
    if len(blob) < 8:
        raise ValueError(f"{source}: too short for a safetensors file")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > len(blob) - 8:
        raise ValueError(f"{source}: header length {n} exceeds the file size")
    try:
        header = json.loads(blob[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{source}: header is not valid JSON: {e}") from None
    if not isinstance(header, dict):
        raise ValueError(f"{source}: header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in metadata.items()):
        raise ValueError(f"{source}: __metadata__ must map strings to strings")
    return 8 + n, header, metadata


def read_header(path):
    """Return (header dict without __metadata__, metadata dict) of a safetensors file."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{path}: too short for a safetensors file")
        (n,) = struct.unpack("<Q", head)
        _, header, metadata = _parse_header(head + f.read(n), path)
    return header, metadata


def load_file(path):
    """Read a safetensors file: returns (dict name -> torch.Tensor in file order, metadata dict).
    Tensors are copies (writable, owned)."""
    with open(path, "rb") as f:
        blob = f.read()
    start, header, metadata = _parse_header(blob, path)
    data_len = len(blob) - start
    tensors = {}
    for name, info in header.items():
        try:
            dtype = DTYPES[info["dtype"]]
            shape = [int(s) for s in info["shape"]]
            begin, end = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path}: tensor '{name}': malformed header entry {info!r}") from None
        if any(s < 0 for s in shape):
            raise ValueError(f"{path}: tensor '{name}': negative dimension in {shape}")
        numel = 1
        for s in shape:
            numel *= s
        itemsize = torch.empty((), dtype=dtype).element_size()
        if not (0 <= begin <= end <= data_len) or end - begin != numel * itemsize:
            raise ValueError(f"{path}: tensor '{name}': data_offsets [{begin}, {end}] do not fit "
                             f"shape {shape} {info['dtype']} within {data_len} data bytes")
        raw = bytearray(blob[start + begin:start + end])
        if numel == 0:
            t = torch.empty(shape, dtype=dtype)
        elif dtype == torch.bool:
            t = torch.frombuffer(raw, dtype=torch.uint8).to(torch.bool).reshape(shape)
        else:
            t = torch.frombuffer(raw, dtype=dtype).reshape(shape)
        tensors[name] = t
    return tensors, dict(metadata)
