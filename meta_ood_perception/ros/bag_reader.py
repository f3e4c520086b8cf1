"""The input side of ``meta-ood replay``: opening a bag, choosing its topics, ordering and deserializing messages.

:func:`open_reader` opens rosbag2 (MCAP or sqlite3, a bag directory or a single ``.mcap`` / ``.db3`` file) and
rosbag1 bags through ``rosbags`` (an MCAP recording cut short through
:class:`~meta_ood_perception.ros.salvage.SalvageReader` on request); :func:`select_topics` picks the camera and label
connections; :func:`ordered` re-emits messages in header-stamp order inside a reorder window (the stamp is read
from the serialized bytes: :func:`stamp_key`); :func:`deserialize` turns bytes into a message or raises
:class:`~meta_ood_perception.errors.InputError`; :func:`guarded` ends the message stream at the first read error of
a bag damaged part way. No ROS installation is needed.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from ..errors import BagError, InputError
from ..reports import first_line
from . import conversions as cv
from .params import OUTPUTS
from .salvage import SalvageReader, mcap_file

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
NS_PER_S = 1_000_000_000


class ReplayError(BagError):
    """The replay cannot start or go on (not a bag, missing topic, existing output, ...); one line for the user."""


#: (connection, log time ns, serialized bytes): one message as the bag readers yield it
BagMessage = tuple[Any, int, bytes]


def open_reader(path: str | Path, salvage: bool = False) -> Any:
    """An opened ``rosbags.highlevel.AnyReader`` over ``path``; anything that is not a readable bag → ReplayError.

    With ``salvage``, an MCAP file that ``rosbags`` cannot open (a recording cut short) is read up to its damage by
    :class:`~meta_ood_perception.ros.salvage.SalvageReader` instead.
    """
    from rosbags.highlevel import AnyReader

    bag = Path(path)
    if not bag.exists():
        raise ReplayError(f"{bag}: no such file or directory")
    types = cv.RosbagsTypes()
    try:
        reader = AnyReader([bag], default_typestore=types.typestore)
        reader.open()
    except Exception as err:  # rosbags raises several reader error types, and OSError / sqlite3 errors
        detail = first_line(err)
        if salvage and mcap_file(bag) is not None:
            try:
                return SalvageReader(bag)
            except BagError as salvage_err:
                raise ReplayError(f"{bag}: cannot salvage: {salvage_err}") from None
        hint = " (a recording cut short? --salvage reads what it still holds)" if mcap_file(bag) else ""
        raise ReplayError(f"{bag} is not a readable rosbag2 (MCAP / sqlite3) or rosbag1 bag: {detail}{hint}") from None
    return reader


def image_topics(reader: Any) -> dict[str, str]:
    """``{topic: message type}`` of the bag's Image / CompressedImage topics."""
    return {c.topic: c.msgtype for c in reader.connections if c.msgtype in IMAGE_TYPES}


def _describe(topics: dict[str, str]) -> str:
    return ", ".join(f"{t} ({m.rsplit('/', 1)[-1]})" for t, m in sorted(topics.items())) or "none"


def _derived(topic: str) -> bool:
    """A label topic (a name segment containing "label") or one of the node's outputs: not a camera."""
    segments = topic.strip("/").split("/")
    return segments[-1] in OUTPUTS or any("label" in seg for seg in segments)


def select_topics(
    reader: Any, bag: Path, wanted_topics: Sequence[str] = (), label_topic: str | None = None
) -> tuple[list[Any], list[Any]]:
    """(camera connections, label connections) of ``reader``.

    ``wanted_topics`` empty = every Image / CompressedImage topic except label topics (a name segment containing
    ``label``) and the node's own outputs. Raises :class:`ReplayError` for a topic that is not in the bag or not an
    image (listing the bag's image topics), a label topic that is not an Image, or no messages on the topics.
    """
    images = image_topics(reader)
    all_topics = {c.topic: c.msgtype for c in reader.connections}
    derived = {label_topic} | {t for t in images if _derived(t)}
    wanted = list(wanted_topics) or sorted(set(images) - derived)
    if not wanted:
        raise ReplayError(f"{bag} has no image topics (sensor_msgs/msg/Image or CompressedImage); its topics: "
                          f"{', '.join(sorted(all_topics)) or 'none'}")  # fmt: skip
    for topic in wanted:
        if topic not in all_topics:
            raise ReplayError(f"topic {topic} is not in {bag}; its image topics: {_describe(images)}")
        if topic not in images:
            raise ReplayError(f"topic {topic} in {bag} is {all_topics[topic]}, not an image; "
                              f"its image topics: {_describe(images)}")  # fmt: skip
    labels = []
    if label_topic is not None:
        if label_topic not in all_topics:
            raise ReplayError(f"label topic {label_topic} is not in {bag}; its topics: {_describe(all_topics)}")
        if all_topics[label_topic] != "sensor_msgs/msg/Image":
            raise ReplayError(f"label topic {label_topic} is {all_topics[label_topic]}, not an Image")
        labels = [c for c in reader.connections if c.topic == label_topic]
    connections = [c for c in reader.connections if c.topic in wanted]
    if sum(c.msgcount for c in connections) == 0:
        raise ReplayError(f"{bag} holds no messages on {', '.join(wanted)}")
    return connections, labels


def guarded(messages: Iterator[BagMessage], errors: list[str]) -> Iterator[BagMessage]:
    """Yield bag messages until the reader fails (a damaged bag); the failure goes to ``errors``."""
    count = 0
    iterator = iter(messages)
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            return
        except Exception as err:  # rosbags / mcap / sqlite3 raise their own types on damaged data
            errors.append(f"the input bag is damaged after {count} messages: {first_line(err)}")
            return
        count += 1
        yield item


def ordered(messages: Iterator[BagMessage], window: int, ros1: bool = False) -> Iterator[BagMessage]:
    """Re-emit bag messages sorted by :func:`stamp_key` inside a window of ``window`` messages (ties keep the
    bag's order): recording jitter does not reorder frames."""
    heap: list[tuple[int, int, Any, int, bytes]] = []
    for seq, (connection, log_time, raw) in enumerate(messages):
        heapq.heappush(heap, (stamp_key(raw, log_time, ros1), seq, connection, log_time, raw))
        if len(heap) > window:
            _, _, connection, log_time, raw = heapq.heappop(heap)
            yield connection, log_time, raw
    while heap:
        _, _, connection, log_time, raw = heapq.heappop(heap)
        yield connection, log_time, raw


def stamp_key(raw: bytes, log_time: int, ros1: bool = False) -> int:
    """The header stamp (ns) read from a serialized message that starts with a header, else ``log_time``.

    ROS 2 (CDR): a 4-byte encapsulation header (``00 00`` big endian / ``00 01`` little endian), then int32 sec and
    uint32 nanosec. ROS 1: uint32 seq, uint32 sec, uint32 nsec, little endian. A message too short to hold a stamp,
    or with nanoseconds ≥ 1 s, gives ``log_time``.
    """
    if ros1:
        if len(raw) < 12:
            return log_time
        sec, nanosec = int.from_bytes(raw[4:8], "little"), int.from_bytes(raw[8:12], "little")
        return sec * NS_PER_S + nanosec if nanosec < NS_PER_S else log_time
    if len(raw) < 12 or raw[0] != 0 or raw[1] not in (0, 1):
        return log_time
    order: Literal["little", "big"] = "little" if raw[1] == 1 else "big"
    sec = int.from_bytes(raw[4:8], order, signed=True)
    nanosec = int.from_bytes(raw[8:12], order)
    return sec * NS_PER_S + nanosec if nanosec < NS_PER_S else log_time


def stamp_or_none(raw: bytes, ros1: bool = False) -> int | None:
    """The header stamp (ns) of a serialized message, or None when it holds none (see :func:`stamp_key`)."""
    key = stamp_key(raw, -1, ros1)
    return None if key == -1 else key


def deserialize(reader: Any, raw: bytes, connection: Any) -> Any:
    """The message of ``raw`` on ``connection``; :class:`~meta_ood_perception.errors.InputError` (one line: type,
    size and what failed) when the bytes do not deserialize."""
    try:
        return reader.deserialize(raw, connection.msgtype)
    except Exception as err:  # rosbags raises struct.error, IndexError, ValueError, ... on corrupt CDR
        raise InputError(f"corrupt message ({connection.msgtype}, {len(raw)} bytes): {first_line(err)}") from None
