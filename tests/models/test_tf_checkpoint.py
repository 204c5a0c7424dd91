"""The TensorFlow checkpoint reader on a bundle built here byte by byte, from the published formats.

LevelDB's table format (blocks of prefix-compressed entries with a restart
array, a 5-byte trailer, a 48-byte footer ending in the magic number) and
TensorFlow's BundleEntryProto (dtype = 1, shape = 2, shard_id = 3, offset = 4,
size = 5). The real musicnn checkpoints are read by the converter; the shipped
weights it made reproduce the original model (tests/models/test_musicnn.py).
"""

from __future__ import annotations

import struct

import numpy as np
import pytest


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number: int, value) -> bytes:
    if isinstance(value, bytes):
        return varint(number << 3 | 2) + varint(len(value)) + value
    return varint(number << 3) + varint(value)


def entry_proto(dtype: int, shape, offset: int, size: int) -> bytes:
    dims = b"".join(field(2, field(1, d)) for d in shape)
    return field(1, dtype) + field(2, dims) + field(4, offset) + field(5, size)


def block(entries) -> bytes:
    out, previous = bytearray(), b""
    for key, value in entries:
        shared = 0
        while shared < min(len(key), len(previous)) and key[shared] == previous[shared]:
            shared += 1
        out += varint(shared) + varint(len(key) - shared) + varint(len(value)) + key[shared:] + value
        previous = key
    return bytes(out) + struct.pack("<II", 0, 1)  # one restart, at 0


def write_bundle(prefix: str, tensors: dict) -> None:
    data, entries = bytearray(), [(b"", field(1, 1))]  # header: num_shards = 1
    for name in sorted(tensors):
        array = tensors[name]
        dtype = {np.float32: 1, np.int64: 9}[array.dtype.type]
        raw = array.astype(array.dtype.newbyteorder("<")).tobytes()
        entries.append((name.encode(), entry_proto(dtype, array.shape, len(data), len(raw))))
        data += raw
    with open(f"{prefix}.data-00000-of-00001", "wb") as handle:
        handle.write(data)
    table = bytearray()
    data_block = block(entries)
    data_handle = varint(0) + varint(len(data_block))
    table += data_block + b"\0\0\0\0\0"
    meta_offset = len(table)
    meta_block = block([])
    table += meta_block + b"\0\0\0\0\0"
    index_offset = len(table)
    index_block = block([(entries[-1][0], data_handle)])
    table += index_block + b"\0\0\0\0\0"
    handles = varint(meta_offset) + varint(len(meta_block)) + varint(index_offset) + varint(len(index_block))
    table += handles.ljust(40, b"\0") + struct.pack("<Q", 0xDB4775248B80FB57)
    with open(f"{prefix}.index", "wb") as handle:
        handle.write(table)


def test_reads_every_tensor_with_its_shape_and_bytes(tmp_path):
    from mgc.models.pretrained.tf_checkpoint import list_tensors, read_checkpoint

    tensors = {
        "conv2d/kernel": np.arange(2 * 3 * 1 * 4, dtype=np.float32).reshape(2, 3, 1, 4) / 7,
        "conv2d/kernel/Adam": np.full((2, 3, 1, 4), 0.5, np.float32),  # shares a prefix with the key before
        "global_step": np.array(1234567890123, np.int64),
        "dense/bias": np.linspace(-1, 1, 300, dtype=np.float32),  # a size that needs a 2-byte varint
    }
    write_bundle(str(tmp_path / "model"), tensors)
    listed = list_tensors(tmp_path / "model")
    assert set(listed) == set(tensors)
    assert listed["conv2d/kernel"]["shape"] == (2, 3, 1, 4) and listed["global_step"]["shape"] == ()
    read = read_checkpoint(tmp_path / "model")
    for name, array in tensors.items():
        assert read[name].dtype == array.dtype and read[name].shape == array.shape
        np.testing.assert_array_equal(read[name], array)
    assert set(read_checkpoint(tmp_path / "model", ["dense/bias"])) == {"dense/bias"}


def test_refuses_what_is_not_a_checkpoint(tmp_path):
    from mgc.models.pretrained.tf_checkpoint import CheckpointError, list_tensors, read_checkpoint

    (tmp_path / "x.index").write_bytes(b"\0" * 100)
    with pytest.raises(CheckpointError, match="bad magic"):
        list_tensors(tmp_path / "x")
    write_bundle(str(tmp_path / "m"), {"w": np.zeros(4, np.float32)})
    (tmp_path / "m.data-00000-of-00001").write_bytes(b"\0" * 8)  # shorter than the 16 bytes the index names
    with pytest.raises(CheckpointError, match="do not hold"):
        read_checkpoint(tmp_path / "m")
