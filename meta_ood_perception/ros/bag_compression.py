"""The MCAP chunk compressions an output bag may use (a module of its own: the CLI lists them without importing
the bag libraries)."""

from __future__ import annotations

from ..errors import ConfigError

#: MCAP chunk compressions of :class:`~meta_ood_perception.ros.replay_output.BagWriter` ("none": uncompressed)
COMPRESSIONS = ("zstd", "lz4", "none")
DEFAULT_COMPRESSION = "zstd"  # what replay and the demo write


def check_compression(compression: str) -> None:
    """:class:`~meta_ood_perception.errors.ConfigError` unless ``compression`` is one of :data:`COMPRESSIONS`."""
    if compression not in COMPRESSIONS:
        raise ConfigError(f"bag compression must be one of {', '.join(COMPRESSIONS)}, got {compression!r}")
