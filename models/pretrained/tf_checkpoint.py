"""Read a TensorFlow checkpoint (the V2 "tensor bundle") without TensorFlow.

A checkpoint ``PREFIX`` is two files:

- ``PREFIX.index``: an SSTable (LevelDB's table format) whose keys are tensor
  names and whose values are ``BundleEntryProto`` protobuf messages (dtype,
  shape, shard, offset, size, crc32c); the empty key holds the
  ``BundleHeaderProto``.
- ``PREFIX.data-00000-of-00001`` (one per shard): the tensors' bytes, little-endian,
  at the offsets the index gives.

This module parses both with the standard library and NumPy: varints, the
table's footer, index block and data blocks (uncompressed, as TensorFlow writes
them), and the few protobuf fields needed. Only dense tensors of plain numeric
dtypes are read; anything else raises :class:`CheckpointError`.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

__all__ = ["CheckpointError", "list_tensors", "read_checkpoint"]

_MAGIC = 0xDB4775248B80FB57
_FOOTER = 48
_TRAILER = 5  # block type byte + crc32
#: TensorFlow DataType enum -> NumPy dtype (types.proto).
_DTYPES = {
    1: np.float32,
    2: np.float64,
    3: np.int32,
    4: np.uint8,
    5: np.int16,
    6: np.int8,
    9: np.int64,
    10: np.bool_,
    14: None,  # bfloat16: not needed here
    19: np.float16,
}


class CheckpointError(ValueError):
    """The files are not a TensorFlow V2 checkpoint this reader understands."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise CheckpointError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _block(data: bytes, offset: int, size: int) -> bytes:
    if offset + size + _TRAILER > len(data):
        raise CheckpointError("a block runs past the end of the index file")
    if data[offset + size] != 0:
        raise CheckpointError("compressed index blocks are not supported")
    return data[offset : offset + size]


def _entries(block: bytes):
    """``(key, value)`` of one table block (keys are prefix-compressed against the previous one)."""
    (n_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 - 4 * n_restarts
    pos, key = 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        length, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + length]
        pos += length


def _fields(message: bytes) -> dict[int, list]:
    """Protobuf fields by number: varints as int, length-delimited as bytes, fixed32/64 as int."""
    out: dict[int, list] = {}
    pos = 0
    while pos < len(message):
        tag, pos = _varint(message, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(message, pos)
        elif wire == 2:
            length, pos = _varint(message, pos)
            value, pos = message[pos : pos + length], pos + length
        elif wire == 5:
            (value,), pos = struct.unpack_from("<I", message, pos), pos + 4
        elif wire == 1:
            (value,), pos = struct.unpack_from("<Q", message, pos), pos + 8
        else:
            raise CheckpointError(f"unsupported protobuf wire type {wire}")
        out.setdefault(number, []).append(value)
    return out


def _entry(value: bytes) -> dict:
    fields = _fields(value)
    if 7 in fields:
        raise CheckpointError("sliced (partitioned) tensors are not supported")
    shape = []
    for shape_message in fields.get(2, []):
        for dim in _fields(shape_message).get(2, []):
            shape.append(_fields(dim).get(1, [0])[0])
    return {
        "dtype": fields.get(1, [0])[0],
        "shape": tuple(shape),
        "shard": fields.get(3, [0])[0],
        "offset": fields.get(4, [0])[0],
        "size": fields.get(5, [0])[0],
    }


def list_tensors(prefix: str | os.PathLike) -> dict[str, dict]:
    """Every tensor in the checkpoint: name -> ``{"dtype", "shape", "shard", "offset", "size"}``.

    Parameters
    ----------
    prefix : str or Path
        The checkpoint prefix: ``PREFIX.index`` must exist (for musicnn, the
        prefix is ``FOLDER/`` and the file is ``FOLDER/.index``).
    """
    data = Path(f"{os.fspath(prefix)}.index").read_bytes()
    if len(data) < _FOOTER:
        raise CheckpointError(f"{prefix}.index is too short to be a checkpoint index")
    (magic,) = struct.unpack_from("<Q", data, len(data) - 8)
    if magic != _MAGIC:
        raise CheckpointError(f"{prefix}.index is not an SSTable (bad magic number)")
    footer = data[len(data) - _FOOTER :]
    _meta_offset, pos = _varint(footer, 0)
    _meta_size, pos = _varint(footer, pos)
    index_offset, pos = _varint(footer, pos)
    index_size, pos = _varint(footer, pos)
    tensors = {}
    for _last_key, handle in _entries(_block(data, index_offset, index_size)):
        offset, pos = _varint(handle, 0)
        size, _ = _varint(handle, pos)
        for key, value in _entries(_block(data, offset, size)):
            if key:  # the empty key is the bundle header
                tensors[key.decode("utf-8")] = _entry(value)
    return tensors


def read_checkpoint(prefix: str | os.PathLike, names=None) -> dict[str, np.ndarray]:
    """The tensors of a TensorFlow V2 checkpoint as NumPy arrays (``names``: a subset; default all).

    Raises
    ------
    CheckpointError
        An unknown dtype, a size that disagrees with the shape, or a tensor past the end of its data file.
    """
    tensors = list_tensors(prefix)
    wanted = tensors if names is None else {n: tensors[n] for n in names}
    out = {}
    shards: dict[int, bytes] = {}
    n_shards = 1 + max((t["shard"] for t in tensors.values()), default=0)
    for name, entry in wanted.items():
        dtype = _DTYPES.get(entry["dtype"])
        if dtype is None:
            raise CheckpointError(f"{name}: dtype {entry['dtype']} is not supported")
        if entry["shard"] not in shards:
            path = f"{os.fspath(prefix)}.data-{entry['shard']:05d}-of-{n_shards:05d}"
            shards[entry["shard"]] = Path(path).read_bytes()
        data = shards[entry["shard"]]
        count = int(np.prod(entry["shape"], dtype=np.int64))
        if count * np.dtype(dtype).itemsize != entry["size"] or entry["offset"] + entry["size"] > len(data):
            raise CheckpointError(f"{name}: {entry['size']} bytes at {entry['offset']} do not hold {entry['shape']}")
        array = np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<"), count=count, offset=entry["offset"])
        out[name] = array.reshape(entry["shape"]).astype(dtype, copy=True)
    return out
