"""Synthetic drives (:func:`meta_ood_training.synthetic.drive`) written as rosbag2 bags, as a camera driver would.

Each frame becomes a ``sensor_msgs/msg/Image`` (``rgb8`` / ``bgr8``) or a ``sensor_msgs/msg/CompressedImage``
(``jpeg`` / ``png``, on ``<topic>/compressed``) stamped at ``start_ns + i / fps``, logged 2 ms after its stamp (a
realistic transport delay), plus its LostAndFound-style label image (mono8: 0 road, 1 hazard, 255 void) on the
label topic with the same header, for replay metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from meta_ood_perception.errors import ConfigError, FaultError
from meta_ood_perception.ros import conversions as cv
from meta_ood_perception.ros.replay import BagWriter

from .synthetic import iter_drive

ENCODINGS = ("rgb8", "bgr8", "jpeg", "png")


@dataclass(frozen=True)
class DriveBag:
    """What :func:`write_drive_bag` wrote: the bag, its image and label topics, frame count and size."""

    path: Path
    image_topic: str
    label_topic: str | None
    frames: int
    height: int
    width: int


def write_drive_bag(
    path: str | Path,
    *,
    seed: int = 2024,
    frames: int = 60,
    height: int = 256,
    width: int = 512,
    fps: float = 10.0,
    topic: str = "/camera/front/image_raw",
    label_topic: str | None = "/camera/front/anomaly_labels",
    encoding: str = "rgb8",
    storage: str = "mcap",
    start_ns: int = 1_700_000_000_000_000_000,
    frame_id: str = "camera_front",
    progress: bool = False,
) -> DriveBag:
    """Render ``drive(seed, frames, height, width)`` and write it as a bag at ``path`` (a new directory)."""
    if encoding not in ENCODINGS:
        raise ConfigError(f"drive bag encoding must be one of {', '.join(ENCODINGS)}, got {encoding!r}")
    if fps <= 0 or frames < 1:
        raise ConfigError(f"drive bag needs fps > 0 and frames >= 1, got fps={fps}, frames={frames}")
    types = cv.RosbagsTypes()
    image_topic = f"{topic}/compressed" if encoding in ("jpeg", "png") else topic
    period = round(1e9 / fps)
    with BagWriter(path, types, storage) as bag:
        sequence = iter_drive(seed, frames, height, width)
        for i, (image, target) in enumerate(tqdm(sequence, total=frames, desc="drive bag", disable=not progress)):
            stamp = start_ns + i * period
            header = cv.make_header(types, stamp, frame_id)
            log_time = stamp + 2_000_000
            if encoding in ("jpeg", "png"):
                ext = ".jpg" if encoding == "jpeg" else ".png"
                ok, data = cv2.imencode(ext, np.ascontiguousarray(image[..., ::-1]))
                if not ok:
                    raise FaultError(f"OpenCV cannot encode {encoding}")
                msg = types.get("sensor_msgs/msg/CompressedImage")(
                    header=header, format=encoding, data=np.asarray(data, np.uint8).reshape(-1)
                )
                bag.write(image_topic, "sensor_msgs/msg/CompressedImage", msg, log_time)
            else:
                bag.write(
                    image_topic, "sensor_msgs/msg/Image", cv.rgb_to_image(image, header, types, encoding), log_time
                )
            if label_topic is not None:
                bag.write(label_topic, "sensor_msgs/msg/Image", cv.labels_to_image(target, header, types), log_time)
    return DriveBag(Path(path), image_topic, label_topic, frames, height, width)
