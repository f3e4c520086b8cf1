"""Reading what a truncated MCAP recording still holds (a recorder killed or a disk full before the file was closed).

``rosbags`` needs the MCAP summary section at the end of the file, which a cut-short recording lacks.
:class:`SalvageReader` walks the records from the start instead, with a minimal reader of the MCAP record format
(schemas, channels, messages, and chunks: uncompressed, zstd or lz4, including the readable part of an uncompressed
chunk cut in the middle). It collects the channels and messages it can read up to the damage and offers the small
part of ``rosbags.highlevel.AnyReader``'s interface that replay uses (``connections``, ``messages``,
``deserialize``, ``close``). Messages are deserialized with the ROS 2 Jazzy typestore (+ vision_msgs); channels of
other types are listed but cannot be deserialized. Opt-in: ``meta-ood replay --salvage``. (The ``mcap`` package's
stream reader stops at the first incomplete record, which for a single-chunk recording loses everything; hence
this reader, which also takes the complete records of a chunk cut in the middle.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import conversions as cv

LOG = logging.getLogger(__name__)


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
    """See the module docstring. Raises ``ValueError`` when not even the MCAP header is readable."""

    is2 = True

    def __init__(self, path: str | Path) -> None:
        file = mcap_file(Path(path))
        if file is None:
            raise ValueError(f"{path}: no single MCAP file to salvage")
        self.path = file
        self.types = cv.RosbagsTypes()
        self.error: str | None = None
        channels: dict[int, tuple[str, str]] = {}
        counts: dict[int, int] = {}
        for record in self._records():
            if isinstance(record, _Channel):
                channels[record.id] = (record.topic, self._schemas.get(record.schema_id, ""))
            elif isinstance(record, _Message) and record.channel_id in channels:
                counts[record.channel_id] = counts.get(record.channel_id, 0) + 1
        if not channels:
            raise ValueError(f"{file}: nothing to salvage ({self.error or 'no channels'})")
        self.connections = [SalvagedConnection(i, topic, msgtype, counts.get(i, 0))
                            for i, (topic, msgtype) in sorted(channels.items())]  # fmt: skip
        total = sum(c.msgcount for c in self.connections)
        LOG.warning("salvage: %s is damaged (%s); %d readable messages on %d topics before the damage", file,
                    self.error or "no summary section", total, len(self.connections))  # fmt: skip

    def _records(self) -> Iterator[Any]:
        self._schemas: dict[int, str] = {}
        data = self.path.read_bytes()
        for record in _parse(data, 8 if data[:8] == MAGIC else 0, len(data), self._fail):
            if isinstance(record, _Schema):
                self._schemas[record.id] = record.name
            yield record

    def _fail(self, reason: str) -> None:
        if self.error is None:
            self.error = reason

    def messages(self, connections: Collection[SalvagedConnection] = ()) -> Iterator[tuple[Any, int, bytes]]:
        """(connection, log time ns, CDR bytes) in file order, for the given connections (default: all)."""
        wanted = {c.id: c for c in (connections or self.connections)}
        for record in self._records():
            if isinstance(record, _Message) and record.channel_id in wanted:
                yield wanted[record.channel_id], int(record.log_time), bytes(record.data)

    def deserialize(self, raw: bytes, msgtype: str) -> Any:
        """CDR bytes → a message of the Jazzy typestore (KeyError for types it does not know)."""
        return self.types.typestore.deserialize_cdr(raw, msgtype)

    def close(self) -> None:
        """Nothing to release (every pass opens the file anew)."""


MAGIC = b"\x89MCAP0\r\n"
SCHEMA, CHANNEL, MESSAGE, CHUNK = 0x03, 0x04, 0x05, 0x06


@dataclass(frozen=True)
class _Schema:
    id: int
    name: str


@dataclass(frozen=True)
class _Channel:
    id: int
    schema_id: int
    topic: str


@dataclass(frozen=True)
class _Message:
    channel_id: int
    log_time: int
    data: bytes


def _string(data: bytes, at: int) -> tuple[str, int]:
    size = int.from_bytes(data[at : at + 4], "little")
    return data[at + 4 : at + 4 + size].decode("utf-8", "replace"), at + 4 + size


def _parse(data: bytes, start: int, end: int, fail: Callable[[str], None]) -> Iterator[Any]:
    """Records of ``data[start:end]``; reports the first damage through ``fail`` and stops there."""
    at = start
    while at < end:
        if at + 9 > end:
            fail(f"truncated record header at byte {at}")
            return
        opcode, length = data[at], int.from_bytes(data[at + 1 : at + 9], "little")
        body, after = at + 9, at + 9 + length
        if after > end:
            if opcode == CHUNK:  # an uncompressed chunk cut in the middle: its complete records still count
                yield from _chunk(data, body, end, fail, partial=True)
            fail(f"record at byte {at} cut short ({length} bytes declared, {end - body} present)")
            return
        try:
            if opcode == SCHEMA:
                name, _ = _string(data, body + 2)
                yield _Schema(int.from_bytes(data[body : body + 2], "little"), name)
            elif opcode == CHANNEL:
                topic, _ = _string(data, body + 4)
                yield _Channel(int.from_bytes(data[body : body + 2], "little"),
                               int.from_bytes(data[body + 2 : body + 4], "little"), topic)  # fmt: skip
            elif opcode == MESSAGE:
                channel, log_time = data[body : body + 2], data[body + 6 : body + 14]
                yield _Message(int.from_bytes(channel, "little"), int.from_bytes(log_time, "little"),
                               data[body + 22 : after])  # fmt: skip
            elif opcode == CHUNK:
                yield from _chunk(data, body, after, fail, partial=False)
        except (ValueError, IndexError) as err:
            fail(f"unreadable record at byte {at}: {err}")
            return
        at = after


def _chunk(data: bytes, body: int, end: int, fail: Callable[[str], None], *, partial: bool) -> Iterator[Any]:
    compression, at = _string(data, body + 28)
    size = int.from_bytes(data[at : at + 8], "little")
    records = data[at + 8 : min(at + 8 + size, end)]
    if compression == "":
        yield from _parse(records, 0, len(records), fail if not partial else (lambda reason: None))
        return
    if partial:
        return
    try:
        if compression == "zstd":
            import zstandard

            records = zstandard.ZstdDecompressor().decompress(records, max_output_size=1 << 31)
        elif compression == "lz4":
            import lz4.frame

            records = lz4.frame.decompress(records)
        else:
            fail(f"chunk compression {compression!r} is not supported")
            return
    except Exception as err:  # a damaged compressed chunk
        fail(f"cannot decompress a {compression} chunk: {err}")
        return
    yield from _parse(records, 0, len(records), fail)
