"""The project's one error hierarchy.

Every error the runtime, the ROS layer, the CLI and the training package raise on purpose derives from
:class:`MetaOodError`; what went wrong decides the subclass, never the message text:

- :class:`InputError` — the input is bad: a camera frame, a file, a value given by the user (a parameter, a CLI
  option, a dataset). A node drops the frame and counts a *rejection*; the CLI prints one line and exits 2.
- :class:`ConfigError` — a bad setting (parameter, CLI option, configuration file): an :class:`InputError` caught
  at the boundary where the configuration is validated, once.
- :class:`FaultError` — the software or the hardware failed on good input: the inference backend raised, the network
  produced non-finite output. A node counts a *fault* (and resets its history); the CLI prints one line and exits 2.
- :class:`BundleError` — a model bundle that cannot be used (missing file, bad manifest, mismatched model).
- :class:`BagError` — a rosbag2 that cannot be read or an output that cannot be written by ``meta-ood replay``.

:class:`InputError`, :class:`ConfigError`, :class:`BundleError` and :class:`BagError` are also ``ValueError`` s and
:class:`FaultError` a ``RuntimeError``, so code written against the built-in exceptions keeps working. Anything else
that escapes (a bare ``ValueError`` from numpy, a ``KeyError``) is a bug: the CLI shows its traceback.
"""

from __future__ import annotations


class MetaOodError(Exception):
    """Base of every error this project raises on purpose; its message is one line naming the problem."""


class InputError(MetaOodError, ValueError):
    """Bad input data: a frame, a file, a value given by the user."""


class ConfigError(InputError):
    """A bad setting (ROS parameter, CLI option, configuration file), naming the setting and the value."""


class FaultError(MetaOodError, RuntimeError):
    """A failure on good input: the backend raised, the network produced non-finite or misshaped output."""


class BundleError(MetaOodError, ValueError):
    """A bundle that cannot be used, with the file or field at fault."""


class BagError(MetaOodError, ValueError):
    """A rosbag2 that cannot be read, or a replay output that cannot be written."""
