"""The input side of replay without a pipeline: stamps read from serialized bytes, stamp ordering, deserialization
errors, and the error types."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from meta_ood_perception.errors import BagError, InputError
from meta_ood_perception.ros import conversions as cv
from meta_ood_perception.ros.bag_reader import ReplayError, deserialize, ordered, stamp_key, stamp_or_none
from meta_ood_perception.ros.replay import ReplayError as ReplayErrorFromReplay

T = cv.RosbagsTypes()
IMAGE = "sensor_msgs/msg/Image"


def image_bytes(stamp_ns: int) -> bytes:
    msg = T.get(IMAGE)(header=cv.make_header(T, stamp_ns, "cam"), height=1, width=1, encoding="mono8",
                       is_bigendian=0, step=1, data=np.zeros(1, np.uint8))  # fmt: skip
    return bytes(T.typestore.serialize_cdr(msg, IMAGE))


def test_stamps_are_read_from_cdr_and_ros1_bytes():
    stamp = 1_700_000_123 * 10**9 + 456_789
    raw = image_bytes(stamp)
    assert raw[:2] == b"\x00\x01" and stamp_key(raw, -5) == stamp == stamp_or_none(raw)
    big = b"\x00\x00\x00\x00" + (12).to_bytes(4, "big") + (34).to_bytes(4, "big")  # big-endian encapsulation
    assert stamp_key(big, -5) == 12 * 10**9 + 34
    negative = b"\x00\x01\x00\x00" + (-2).to_bytes(4, "little", signed=True) + (5).to_bytes(4, "little")
    assert stamp_key(negative, 0) == -2 * 10**9 + 5
    assert stamp_key(raw[:11], 77) == 77 and stamp_or_none(raw[:11]) is None  # too short for a stamp
    assert stamp_key(b"\x01\x01" + raw[2:], 77) == 77  # not a CDR encapsulation header
    bad_ns = raw[:8] + (10**9).to_bytes(4, "little") + raw[12:]
    assert stamp_key(bad_ns, 77) == 77
    ros1 = (9).to_bytes(4, "little") + (3).to_bytes(4, "little") + (7).to_bytes(4, "little")  # seq, sec, nsec
    assert stamp_key(ros1, 0, ros1=True) == 3 * 10**9 + 7 and stamp_key(ros1[:8], 5, ros1=True) == 5


def test_messages_are_ordered_by_stamp_inside_the_window_and_ties_keep_the_bag_order():
    stamps = [30, 10, 20, 20, 50, 40, 5]
    messages = [(SimpleNamespace(topic=f"m{i}"), 1000 + i, image_bytes(s)) for i, s in enumerate(stamps)]
    out = [c.topic for c, _, _ in ordered(iter(messages), window=16)]
    assert out == ["m6", "m1", "m2", "m3", "m0", "m5", "m4"]
    # a window of 1 only swaps neighbours: a message later than the window still comes late
    assert [c.topic for c, _, _ in ordered(iter(messages), window=1)] == ["m1", "m2", "m3", "m0", "m5", "m6", "m4"]


def test_a_message_that_does_not_deserialize_raises_an_input_error_naming_type_and_size():
    reader = SimpleNamespace(deserialize=lambda raw, msgtype: T.typestore.deserialize_cdr(raw, msgtype))
    raw = image_bytes(1)
    assert deserialize(reader, raw, SimpleNamespace(msgtype=IMAGE)).header.stamp.nanosec == 1
    with pytest.raises(InputError, match=rf"corrupt message \({IMAGE}, 40 bytes\)") as err:
        deserialize(reader, raw[:40], SimpleNamespace(msgtype=IMAGE))
    assert len(str(err.value).splitlines()) == 1


def test_replay_errors_belong_to_the_one_hierarchy():
    assert ReplayErrorFromReplay is ReplayError and issubclass(ReplayError, BagError)
    assert issubclass(ReplayError, ValueError)  # code written against ValueError keeps working
