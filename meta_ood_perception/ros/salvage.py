"""Reading what a truncated MCAP recording still holds (a recorder killed or a disk full before the file was closed).

``rosbags`` needs the MCAP summary section at the end of the file, which a cut-short recording lacks.
:class:`SalvageReader` reads the file from the start as a stream with the ``mcap`` library's
:class:`~mcap.stream_reader.StreamReader` (one record, or one chunk, in memory at a time, reads never past the end
of the file whatever a damaged length field declares) and keeps every complete message before the damage. Chunks
(uncompressed, zstd or lz4) are decompressed by streaming decompressors and read by a second stream reader, so a
chunk cut in the middle or damaged part way still gives its records up to the first incomplete one, as far as its
compression decodes (uncompressed and lz4 chunks record by record, zstd by whole blocks). It offers the
small part of ``rosbags.highlevel.AnyReader``'s interface that replay uses (``connections``, ``messages``,
``deserialize``, ``close``). Messages are deserialized with the ROS 2 Jazzy typestore (+ vision_msgs); channels of
other types are listed but cannot be deserialized. Opt-in: ``meta-ood replay --salvage``.
"""

from __future__ import annotations

import io
import logging
import struct
from collections.abc import Callable, Collection, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mcap.exceptions import EndOfFile, McapError
from mcap.records import Channel, Chunk, McapRecord, Message, Schema
from mcap.stream_reader import StreamReader

from ..errors import BagError
from ..reports import first_line
from . import conversions as cv

LOG = logging.getLogger(__name__)

#: what the mcap stream reader raises on damaged data: its own errors (EndOfFile, InvalidMagic), struct.error for a
#: field cut short, ValueError (UnicodeDecodeError) for a string that is not UTF-8
DAMAGE_ERRORS = (McapError, struct.error, ValueError)
#: a compressed chunk decompresses to at most this many bytes (a damaged size field must not allocate more)
MAX_CHUNK_BYTES = 1 << 30


@dataclass(frozen=True)
class SalvagedConnection:
    """A channel of the damaged file: ``topic``, ``msgtype`` (ROS 2 name) and ``msgcount`` readable messages."""

    id: int
    topic: str
    msgtype: str
    msgcount: int


def mcap_file(path: Path) -> Path | None:
    """The MCAP file of ``path`` (the file itself, or the single ``.mcap`` in a bag folder), else None."""
    if path.is_file() and path.suffix == ".mcap":
        return path
    if path.is_dir():
        files = sorted(path.glob("*.mcap"))
        return files[0] if len(files) == 1 else None
    return None


class SalvageReader:
    """See the module docstring. Raises :class:`~meta_ood_perception.errors.BagError` when no channel is readable.

    Attributes:
        path: the MCAP file. connections: its channels with their readable message counts.
        error: the first damage found (one line), or None when the file reads to its end.
    """

    is2 = True

    def __init__(self, path: str | Path) -> None:
        file = mcap_file(Path(path))
        if file is None:
            raise BagError(f"{path}: no single MCAP file to salvage")
        self.path = file
        self.types = cv.RosbagsTypes()
        self.error: str | None = None
        schemas: dict[int, str] = {}
        channels: dict[int, tuple[str, str]] = {}
        counts: dict[int, int] = {}
        for record in self._records():
            if isinstance(record, Schema):
                schemas[record.id] = record.name
            elif isinstance(record, Channel):
                channels[record.id] = (record.topic, schemas.get(record.schema_id, ""))
            elif isinstance(record, Message) and record.channel_id in channels:
                counts[record.channel_id] = counts.get(record.channel_id, 0) + 1
        if not channels:
            raise BagError(f"{file}: nothing to salvage ({self.error or 'no channels'})")
        self.connections = [SalvagedConnection(i, topic, msgtype, counts.get(i, 0))
                            for i, (topic, msgtype) in sorted(channels.items())]  # fmt: skip
        total = sum(c.msgcount for c in self.connections)
        LOG.warning("salvage: %s is damaged (%s); %d readable messages on %d topics before the damage", file,
                    self.error or "no summary section", total, len(self.connections))  # fmt: skip

    def _records(self) -> Iterator[McapRecord]:
        """One pass over the file (schemas, channels, messages up to the damage); the damage goes to ``error``."""
        with _Clamped(self.path.open("rb", buffering=0), self.path.stat().st_size) as stream:
            yield from salvage_records(stream, self._fail)

    def _fail(self, reason: str) -> None:
        if self.error is None:
            self.error = reason

    def messages(self, connections: Collection[SalvagedConnection] = ()) -> Iterator[tuple[Any, int, bytes]]:
        """(connection, log time ns, CDR bytes) in file order, for the given connections (default: all)."""
        wanted = {c.id: c for c in (connections or self.connections)}
        for record in self._records():
            if isinstance(record, Message) and record.channel_id in wanted:
                yield wanted[record.channel_id], record.log_time, record.data

    def deserialize(self, raw: bytes, msgtype: str) -> Any:
        """CDR bytes → a message of the Jazzy typestore (KeyError for types it does not know)."""
        return self.types.typestore.deserialize_cdr(raw, msgtype)

    def close(self) -> None:
        """Nothing to release (every pass opens the file anew)."""


class _Clamped(io.BufferedReader):
    """A file whose reads never ask for more than it still holds: a damaged length field (a chunk's data length is
    not bounded by the stream reader's record size limit) gives a short read, not an allocation of gigabytes."""

    def __init__(self, raw: io.RawIOBase, size: int) -> None:
        super().__init__(raw)
        self.left = size

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (all that is left for None or a negative size)."""
        data = super().read(self.left if size is None or size < 0 else min(size, self.left))
        self.left -= len(data)
        return data


class _Reader(StreamReader):
    """A :class:`~mcap.stream_reader.StreamReader` that keeps track of the record it is reading.

    The stream reader reads a record's fields (a chunk's data comes back short when the file ends inside it) and
    only then fails on the rest of the record (its padding): ``reading`` is the record read but not yet handed out
    (e.g. a chunk cut short); ``record_end`` is where the latest record declared to end (its padding included).
    """

    def __init__(self, stream: IO[bytes], *, skip_magic: bool) -> None:
        # no record size limit: reads are bounded by what the stream holds (_Clamped, BytesIO)
        super().__init__(stream, skip_magic=skip_magic, emit_chunks=True, record_size_limit=None)
        self.source = stream
        self.reading: McapRecord | None = None
        self.record_end = stream.tell()

    def _read_record(self, opcode: int, length: int) -> McapRecord | None:
        self.record_end = self.source.tell() + length
        self.reading = None
        self.reading = super()._read_record(opcode, length)
        return self.reading


def salvage_records(stream: IO[bytes], fail: Callable[[str], None]) -> Iterator[McapRecord]:
    """Schema, channel and message records of the MCAP ``stream``, chunks opened, up to the first damage, which is
    reported once through ``fail(reason)``; nothing is raised for damaged data. ``stream`` should not read past its
    end on request (a file opened through ``_Clamped``, a ``BytesIO``)."""
    reader = _Reader(stream, skip_magic=False)
    records = reader.records
    while True:
        try:
            record = next(records)
        except StopIteration:
            return
        except DAMAGE_ERRORS as err:
            if isinstance(reader.reading, Chunk):  # a chunk cut short: its complete records still count
                found, _ = yield from _chunk_records(reader.reading, cut=True)
                fail(f"a chunk cut short at byte {stream.tell()} ({found} complete messages read from it)")
            else:
                fail(_damage(err, stream.tell()))
            return
        reader.reading = None
        if isinstance(record, Chunk):
            found, damage = yield from _chunk_records(record, cut=False)
            if damage is not None:  # a chunk damaged part way: the records before the damage were kept
                fail(f"a damaged {record.compression or 'uncompressed'} chunk before byte {stream.tell()}: {damage} "
                     f"({found} complete messages read from it)")  # fmt: skip
                return
        elif isinstance(record, Schema | Channel | Message):
            yield record


def _damage(err: BaseException, position: int, where: str = "") -> str:
    """One line for the damage ``err`` found by the time the reader was at byte ``position`` (of ``where``)."""
    if isinstance(err, EndOfFile | struct.error):
        return f"a record cut short at byte {position}{where}"
    return f"an unreadable record before byte {position}{where}: {first_line(err)}"


def _chunk_records(chunk: Chunk, *, cut: bool) -> Generator[McapRecord, None, tuple[int, str | None]]:
    """The schema / channel / message records of a chunk up to its first incomplete or unreadable record (of a
    chunk ``cut`` short, of the part its compression decodes); returns (messages, the damage or None)."""
    try:
        data = _decompress(chunk)
    except Exception as err:  # zstandard.ZstdError, lz4's RuntimeError, ...: a damaged compressed chunk
        return 0, f"cannot decompress it: {first_line(err)}"
    damage = None
    if not cut and len(data) != chunk.uncompressed_size:
        damage = f"{len(data)} bytes decompressed, {chunk.uncompressed_size} declared"
    source = io.BytesIO(data)
    reader = _Reader(source, skip_magic=True)
    records = reader.records
    found = 0
    while True:
        try:
            record = next(records)
        except DAMAGE_ERRORS as err:  # the end of the data, or the first incomplete record
            if source.tell() != len(data) or reader.record_end != len(data):
                damage = damage or _damage(err, source.tell(), " of its records")
            return found, damage
        if isinstance(record, Schema | Channel | Message):
            found += isinstance(record, Message)
            yield record


def _decompress(chunk: Chunk) -> bytes:
    """A chunk's records: an uncompressed chunk's data; a compressed chunk's data decompressed by a streaming
    decompressor (of a chunk cut short, as much as the bytes present decode to), at most the declared size and
    :data:`MAX_CHUNK_BYTES`. An unknown compression raises :class:`~mcap.exceptions.McapError`."""
    limit = min(chunk.uncompressed_size, MAX_CHUNK_BYTES)
    if chunk.compression == "":
        return chunk.data
    if chunk.compression == "zstd":
        import zstandard

        return bytes(zstandard.ZstdDecompressor().stream_reader(io.BytesIO(chunk.data)).read(limit))
    if chunk.compression == "lz4":
        import lz4.frame

        return bytes(lz4.frame.LZ4FrameDecompressor().decompress(chunk.data, max_length=limit))
    raise McapError(f"unsupported chunk compression {chunk.compression!r}")
