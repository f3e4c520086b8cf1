"""Salvage of MCAP recordings cut short or damaged, through the mcap library's stream reader.

Expected counts are computed from the file's bytes (where each message record ends), not hard-coded; the salvaged
messages are compared byte for byte with those of the intact file.
"""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from mcap.records import Chunk, Message
from mcap.stream_reader import StreamReader, breakup_chunk
from mcap.writer import CompressionType, Writer

from meta_ood_perception.errors import BagError
from meta_ood_perception.ros import conversions as cv
from meta_ood_perception.ros.bag_reader import ReplayError, open_reader
from meta_ood_perception.ros.replay_output import BagWriter
from meta_ood_perception.ros.salvage import SalvageReader

T = cv.RosbagsTypes()
TOPIC = "/cam/front/image_raw"
IMAGE = "sensor_msgs/msg/Image"


def payloads(count: int, height: int = 32, width: int = 64, seed: int = 0) -> list[bytes]:
    """CDR bytes of ``count`` rgb8 images of random pixels (each payload occurs once in a file)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        msg = T.get(IMAGE)(header=cv.make_header(T, 1_000 + i, "cam"), height=height, width=width, encoding="rgb8",
                           is_bigendian=0, step=width * 3, data=pixels.reshape(-1))  # fmt: skip
        out.append(bytes(T.typestore.serialize_cdr(msg, IMAGE)))
    return out


def rosbags_mcap(folder: Path, messages: list[bytes]) -> Path:
    """An MCAP bag written by rosbags (uncompressed chunks of about 1 MiB); returns its .mcap file."""
    with BagWriter(folder) as bag:
        for i, raw in enumerate(messages):
            bag.write_raw(TOPIC, IMAGE, raw, 10_000 + i)
    return next(folder.glob("*.mcap"))


def mcap_with(path: Path, messages: list[bytes], compression: CompressionType, chunk_size: int) -> Path:
    """An MCAP file written by the mcap library with ``compression`` and small chunks."""
    with path.open("wb") as f:
        writer = Writer(f, chunk_size=chunk_size, compression=compression)
        writer.start(profile="ros2")
        schema = writer.register_schema(IMAGE, "ros2msg", b"")
        channel = writer.register_channel(TOPIC, "cdr", schema)
        for i, raw in enumerate(messages):
            writer.add_message(channel, log_time=10_000 + i, data=raw, publish_time=10_000 + i)
        writer.finish()
    return path


def salvaged(path: Path) -> tuple[list[bytes], str | None]:
    reader = SalvageReader(path)
    return [raw for _, _, raw in reader.messages()], reader.error


def chunk_ends(data: bytes) -> list[tuple[int, int]]:
    """(end offset, messages) of each chunk of an intact MCAP file."""
    stream = io.BytesIO(data)
    out = []
    for record in StreamReader(stream, emit_chunks=True).records:
        if isinstance(record, Chunk):
            out.append((stream.tell(), sum(isinstance(r, Message) for r in breakup_chunk(record))))
    return out


def test_every_message_wholly_before_the_cut_is_recovered(tmp_path):
    messages = payloads(400)  # 6 KiB each: 3 chunks of 1 MiB
    file = rosbags_mcap(tmp_path / "bag", messages)
    data = file.read_bytes()
    ends = [data.find(raw) + len(raw) for raw in messages]
    assert all(e > len(raw) for e, raw in zip(ends, messages, strict=True)) and ends == sorted(ends)
    assert len(chunk_ends(data)) >= 2
    recovered = []
    edges = {ends[0] - 1, ends[0], ends[-1] - 1, ends[-1]}  # one byte short of a message's end, and at it
    for size in sorted({int(len(data) * f) for f in np.linspace(0.05, 0.995, 23)} | edges):
        cut_file = tmp_path / f"cut{size}.mcap"
        cut_file.write_bytes(data[:size])
        expected = sum(e <= size for e in ends)
        try:
            got, error = salvaged(cut_file)
        except BagError:  # not even a channel before the cut
            assert expected == 0 and size < ends[0]
            continue
        assert got == messages[:expected], f"cut at {size} of {len(data)} bytes"
        assert error is not None and "cut short" in error
        recovered.append(expected)
    assert recovered[-1] == len(messages) and len(set(recovered)) > 10


@pytest.mark.parametrize("compression", [CompressionType.LZ4, CompressionType.ZSTD])
def test_compressed_chunks_before_the_cut_are_recovered(tmp_path, compression):
    messages = payloads(200)  # random pixels: chunks of several compression blocks (lz4: 64 KiB, zstd: 128 KiB)
    file = mcap_with(tmp_path / "c.mcap", messages, compression, chunk_size=250_000)
    data = file.read_bytes()
    ends = chunk_ends(data)
    assert len(ends) >= 5
    (before, _), (end, count) = ends[2], ends[3]
    complete = sum(n for _, n in ends[:3])
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[: (before + end) // 2])  # the middle of the fourth chunk
    got, error = salvaged(cut)
    assert got == messages[: len(got)] and complete <= len(got) < complete + count
    assert error is not None and "chunk cut short" in error
    if compression == CompressionType.LZ4:  # lz4 frames decode as a stream: part of the cut chunk too
        assert len(got) > complete


def test_a_damaged_record_inside_a_chunk_keeps_the_messages_before_it(tmp_path):
    messages = payloads(40)
    file = rosbags_mcap(tmp_path / "bag", messages)
    data = bytearray(file.read_bytes())
    at = data.find(messages[17]) - 22 - 8  # the length field of message 17's record
    data[at : at + 8] = (2**60).to_bytes(8, "little")
    broken = tmp_path / "broken.mcap"
    broken.write_bytes(bytes(data))
    got, error = salvaged(broken)
    assert got == messages[:17]
    assert error is not None and "damaged uncompressed chunk" in error and "17 complete messages" in error


def test_a_huge_declared_length_is_a_short_read_not_an_allocation(tmp_path):
    messages = payloads(40)
    data = bytearray(rosbags_mcap(tmp_path / "bag", messages).read_bytes())
    header_length = int.from_bytes(data[9:17], "little")
    chunk = 8 + 9 + header_length
    assert data[chunk] == 0x06  # the first chunk, uncompressed: its data length follows 4 uint64/uint32 fields
    data[chunk + 9 + 28 + 4 : chunk + 9 + 28 + 12] = (2**50).to_bytes(8, "little")  # a petabyte
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(bytes(data[: len(data) // 2]))
    tracemalloc.start()
    try:
        got, error = salvaged(cut)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got == messages[: len(got)] and len(got) > 0 and error is not None
    assert peak < 4 * len(data)


def test_two_passes_hold_one_chunk_at_a_time_not_the_file(tmp_path):
    messages = payloads(500, height=64, width=128, seed=1)  # 12 MiB: 12 chunks
    data = rosbags_mcap(tmp_path / "bag", messages).read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[: len(data) - 5000])
    tracemalloc.start()
    try:
        reader = SalvageReader(cut)
        count = sum(1 for _ in reader.messages())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == sum(c.msgcount for c in reader.connections) and count >= 490
    assert peak < len(data) // 2  # a chunk (1 MiB) and its records, not the file (12 MiB), let alone twice


def test_what_cannot_be_salvaged_is_one_line(tmp_path):
    garbage = tmp_path / "x.mcap"
    garbage.write_bytes(b"\x89MCAP0\r\n" + bytes(50))
    with pytest.raises(BagError, match="nothing to salvage"):
        SalvageReader(garbage)
    not_mcap = tmp_path / "y.mcap"
    not_mcap.write_bytes(b"hello, world" * 10)
    with pytest.raises(BagError, match=r"nothing to salvage.*magic"):
        SalvageReader(not_mcap)
    with pytest.raises(ReplayError, match="cannot salvage") as err:
        open_reader(not_mcap, salvage=True)
    assert isinstance(err.value, BagError) and len(str(err.value).splitlines()) == 1
    folder = tmp_path / "two"
    folder.mkdir()
    (folder / "a.mcap").write_bytes(b"")
    (folder / "b.mcap").write_bytes(b"")
    with pytest.raises(BagError, match="no single MCAP file"):
        SalvageReader(folder)
