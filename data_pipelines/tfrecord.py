"""TFRecord framing with CRC-checked random access.

Why our own: grain's TFRecordIterDataset reads sequentially and skips the CRC checks; a global
shuffle needs random access by byte offset, and silent corruption must be caught and located.

Frame layout (the standard TFRecord one, readable by TensorFlow and grain):
uint64 length (little-endian) | uint32 masked crc32c(length) | data | uint32 masked crc32c(data).
"""
from __future__ import annotations

import os
import struct
from typing import BinaryIO, Iterator

import google_crc32c

_HEADER = struct.Struct("<QI")  # length, masked crc of the 8 length bytes
_FOOTER = struct.Struct("<I")
_MASK_DELTA = 0xA282EAD8
HEADER_BYTES = _HEADER.size  # 12
FOOTER_BYTES = _FOOTER.size  # 4


class CorruptRecordError(ValueError):
    """A record failed a length/CRC check or was cut short; says which file and byte offset."""

    def __init__(self, path: str, offset: int, reason: str):
        super().__init__(f"corrupt record in {path} at byte {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


def masked_crc(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(data: bytes) -> bytes:
    """The on-disk bytes of one record."""
    length = struct.pack("<Q", len(data))
    return length + _FOOTER.pack(masked_crc(length)) + data + _FOOTER.pack(masked_crc(data))


class TFRecordWriter:
    """Appends framed records to one file and remembers each record's byte offset."""

    def __init__(self, path: str):
        self.path = path
        self._f: BinaryIO | None = open(path, "wb")
        self.offsets: list[int] = []
        self.num_bytes = 0

    def write(self, data: bytes) -> int:
        if self._f is None:
            raise ValueError(f"TFRecordWriter for {self.path} is closed")
        offset = self.num_bytes
        length = struct.pack("<Q", len(data))
        self._f.write(length + _FOOTER.pack(masked_crc(length)))
        self._f.write(data)
        self._f.write(_FOOTER.pack(masked_crc(data)))
        self.offsets.append(offset)
        self.num_bytes += HEADER_BYTES + len(data) + FOOTER_BYTES
        return offset

    def close(self) -> None:
        if self._f is not None:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
            self._f = None

    def __enter__(self) -> "TFRecordWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _pread_exact(fd: int, n: int, offset: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = os.pread(fd, n - got, offset + got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_record_fd(fd: int, offset: int, path: str = "<fd>") -> bytes:
    """Reads and verifies the record at `offset` of an open file descriptor (thread-safe pread)."""
    header = _pread_exact(fd, HEADER_BYTES, offset)
    if len(header) < HEADER_BYTES:
        raise CorruptRecordError(path, offset, f"truncated header ({len(header)} of {HEADER_BYTES} bytes)")
    length, length_crc = _HEADER.unpack(header)
    if masked_crc(header[:8]) != length_crc:
        raise CorruptRecordError(path, offset, "length CRC mismatch")
    body = _pread_exact(fd, length + FOOTER_BYTES, offset + HEADER_BYTES)
    if len(body) < length + FOOTER_BYTES:
        raise CorruptRecordError(
            path, offset, f"truncated data ({len(body)} of {length + FOOTER_BYTES} bytes after header)")
    data = body[:length]
    (data_crc,) = _FOOTER.unpack(body[length:])
    if masked_crc(data) != data_crc:
        raise CorruptRecordError(path, offset, "data CRC mismatch")
    return data


def read_record(path: str, offset: int) -> bytes:
    """Reads and verifies one record; raises CorruptRecordError naming the file and offset."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return read_record_fd(fd, offset, path)
    finally:
        os.close(fd)


def scan_offsets(path: str) -> list[int]:
    """Rebuilds a shard's index by walking headers (length CRCs checked, data CRCs not)."""
    offsets: list[int] = []
    size = os.path.getsize(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        offset = 0
        while offset < size:
            header = _pread_exact(fd, HEADER_BYTES, offset)
            if len(header) < HEADER_BYTES:
                raise CorruptRecordError(path, offset, "truncated header at end of file")
            length, length_crc = _HEADER.unpack(header)
            if masked_crc(header[:8]) != length_crc:
                raise CorruptRecordError(path, offset, "length CRC mismatch")
            end = offset + HEADER_BYTES + length + FOOTER_BYTES
            if end > size:
                raise CorruptRecordError(path, offset, f"truncated data (record needs {end - offset} "
                                                       f"bytes, file has {size - offset})")
            offsets.append(offset)
            offset = end
    finally:
        os.close(fd)
    return offsets


def iter_records(path: str) -> Iterator[bytes]:
    """Every record of a shard in order, fully verified."""
    fd = os.open(path, os.O_RDONLY)
    try:
        for offset in scan_offsets(path):
            yield read_record_fd(fd, offset, path)
    finally:
        os.close(fd)
