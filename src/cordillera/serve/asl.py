"""AlpaSim ``.asl`` rollout logs (spec/alpasim.md §5.3).

An ``.asl`` file is a plain stream of records, each a 4-byte big-endian unsigned length followed
by that many bytes of a serialized ``logging.LogEntry``. The first record of an AlpaSim log is
``rollout_metadata``; the reader does not insist on it so that partial logs stay readable.

Writing is "atomic-ish": records go straight to the final path and the file is flushed after
every record, so a crash leaves at most one truncated trailing record, which :func:`read_asl`
skips with an :class:`AslTruncatedWarning` (as AlpaSim's reader does). Corruption before the end
(a record that does not parse) raises ``ValueError``.

Where this plugs in (later): the in-process runtime and the gRPC runtime write one
``rollout.asl`` per rollout with :class:`AslWriter`, converting contracts to protos through
:mod:`cordillera.serve.convert`; evaluation can re-read them with :func:`read_asl`.
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

from google.protobuf.message import DecodeError

from cordillera.serve.stubs import logging_pb2

__all__ = ["AslTruncatedWarning", "AslWriter", "read_asl", "write_asl", "encode_record"]

_HEADER = struct.Struct(">I")  # [bytes] big-endian uint32 length, spec/alpasim.md §5.3
_MAX_RECORD = 2**32 - 1


class AslTruncatedWarning(UserWarning):
    """The last record of an .asl file is incomplete (the writer was interrupted)."""


def encode_record(entry: logging_pb2.LogEntry) -> bytes:
    """One .asl record: 4-byte big-endian length + serialized entry."""
    if not isinstance(entry, logging_pb2.LogEntry):
        raise ValueError(f"an .asl record must be a logging.LogEntry, got {type(entry).__name__}")
    if entry.WhichOneof("log_entry") is None:
        raise ValueError("refusing to write an empty LogEntry (no log_entry field set)")
    payload = entry.SerializeToString()
    if len(payload) > _MAX_RECORD:
        raise ValueError(f"LogEntry of {len(payload)} bytes does not fit a 32-bit length prefix")
    return _HEADER.pack(len(payload)) + payload


class AslWriter:
    """Append ``LogEntry`` records to a new ``.asl`` file, flushing after each one.

    Use as a context manager::

        with AslWriter(run_dir / "rollout.asl") as log:
            log.write(logging_pb2.LogEntry(rollout_metadata=meta))
    """

    def __init__(self, path, overwrite: bool = True):
        self.path = Path(path)
        if not overwrite and self.path.exists():
            raise ValueError(f"{self.path} exists and overwrite=False")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "wb")
        self.n_records = 0

    def write(self, entry: logging_pb2.LogEntry) -> None:
        if self._f.closed:
            raise ValueError(f"AslWriter for {self.path} is closed")
        self._f.write(encode_record(entry))
        self._f.flush()
        self.n_records += 1

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self) -> "AslWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_asl(path, entries: Iterable[logging_pb2.LogEntry]) -> int:
    """Write all entries to a new file; returns the number of records."""
    with AslWriter(path) as w:
        for e in entries:
            w.write(e)
        return w.n_records


def read_asl(path) -> Iterator[logging_pb2.LogEntry]:
    """Yield every complete ``LogEntry`` of an ``.asl`` file in order.

    A truncated trailing record (short header or short payload) ends the iteration with an
    :class:`AslTruncatedWarning`; a complete record that fails to parse raises ``ValueError``."""
    path = Path(path)
    with open(path, "rb") as f:
        index = 0
        while True:
            offset = f.tell()
            header = f.read(_HEADER.size)
            if not header:
                return
            if len(header) < _HEADER.size:
                warnings.warn(f"{path}: record {index} at byte {offset} has a truncated length prefix "
                              f"({len(header)} of 4 bytes); stopping", AslTruncatedWarning, stacklevel=2)
                return
            (n,) = _HEADER.unpack(header)
            payload = f.read(n)
            if len(payload) < n:
                warnings.warn(f"{path}: record {index} at byte {offset} is truncated ({len(payload)} of "
                              f"{n} bytes); stopping", AslTruncatedWarning, stacklevel=2)
                return
            entry = logging_pb2.LogEntry()
            try:
                entry.ParseFromString(payload)
            except DecodeError as e:
                raise ValueError(f"{path}: record {index} at byte {offset} ({n} bytes) is not a "
                                 f"logging.LogEntry: {e}") from e
            yield entry
            index += 1
