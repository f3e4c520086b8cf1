"""Calibrate a bundle's domain monitor (:mod:`meta_ood_perception.domain`) on in-domain frames.

:func:`calibrate` runs the bundle's deployed :class:`~meta_ood_perception.pipeline.AnomalyPipeline` — the code path
of the ROS node, replay and evaluation, no stage re-implemented — over in-domain frames, collects the monitor's
per-frame statistics from ``FrameResult.domain`` and fits :func:`~meta_ood_perception.domain.fit_calibration`.
:func:`calibrate_bundle` writes the result into a bundle's ``bundle.json`` (``domain``; the checksummed files are
not touched). Which frames are in-domain is the builder's choice: synthetic frames for the default bundle
(:class:`SyntheticCalibration`), a split of the training data set for a real bundle.

``python -m meta_ood_training.domain_calibration [BUNDLE]`` calibrates a bundle (default: the embedded default
bundle) on the synthetic frames of :class:`SyntheticCalibration`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm.auto import tqdm

from meta_ood_perception.bundle import DEFAULT_BUNDLE, MANIFEST, load_bundle
from meta_ood_perception.domain import STATISTIC_NAMES, DomainCalibration, fit_calibration
from meta_ood_perception.errors import FaultError, InputError
from meta_ood_perception.pipeline import AnomalyPipeline
from meta_ood_perception.reports import json_safe

from .synthetic import KINDS, Kind, iter_drive, render
from .synthetic.canvas import draw_lighting

LOG = logging.getLogger(__name__)
#: The kinds of single frames :class:`SyntheticCalibration` renders (drives come on top).
FRAME_KINDS: tuple[Kind, ...] = ("closed", "hazard")


def calibrate(
    pipeline: AnomalyPipeline,
    frames: Iterable[npt.NDArray[np.uint8] | tuple[npt.NDArray[np.uint8], Any]],
    *,
    quantile: float = 0.01,
    target_rate: float = 0.005,
    margin: float = 1.25,
    data: Mapping[str, Any] | None = None,
    progress: bool = False,
    total: int | None = None,
) -> DomainCalibration:
    """Calibrate the domain monitor of ``pipeline``'s bundle on in-domain ``frames``.

    Args:
        pipeline: the bundle's deployed pipeline; each frame goes through :meth:`AnomalyPipeline.process` and its
            statistics are read from ``FrameResult.domain.features`` (its current calibration, if any, is ignored).
        frames: (H, W, 3) uint8 RGB frames of any size, or (image, target) pairs (the target is ignored).
        quantile, target_rate, margin: see :func:`~meta_ood_perception.domain.fit_calibration`.
        data: description of the frames (data set, seeds, counts, sizes), stored with the calibration.
        progress: show a progress bar; total: its length when ``frames`` has none.

    Raises:
        InputError: a bad frame, or fewer than 20 frames.
        FaultError: the network failed on a frame.
    """
    rows: list[npt.NDArray[np.float64]] = []
    scales: list[float] = []
    sizes: Counter[str] = Counter()
    for frame in tqdm(frames, desc="domain calibration", total=total, disable=not progress):
        image = frame[0] if isinstance(frame, tuple) else frame
        result = pipeline.process(image)
        features = result.domain.features
        if features is None:  # the pipeline always records them; guard against a future change
            raise FaultError("the pipeline returned no domain statistics")
        rows.append(features.vector(STATISTIC_NAMES))
        scales.append(features.scale)
        sizes[f"{image.shape[0]}x{image.shape[1]}"] += 1
    pipeline.reset()
    if len(rows) < 20:
        raise InputError(f"domain calibration needs at least 20 in-domain frames, got {len(rows)}")
    description = {**dict(data or {}), "frame_sizes": dict(sizes)}
    return fit_calibration(np.stack(rows), STATISTIC_NAMES, quantile=quantile, target_rate=target_rate,
                           margin=margin, data=json_safe(description), scales=scales)  # fmt: skip


def calibrate_bundle(
    bundle_dir: str | Path,
    frames: Iterable[npt.NDArray[np.uint8] | tuple[npt.NDArray[np.uint8], Any]],
    *,
    backend: str = "onnxruntime",
    progress: bool = True,
    data: Mapping[str, Any] | None = None,
    total: int | None = None,
    **options: Any,
) -> DomainCalibration:
    """Calibrate the domain monitor of the bundle in ``bundle_dir`` (or ``"default"``) on in-domain ``frames``
    through its deployed pipeline (``backend``) and store it as ``bundle.json`` ``domain``.

    Only ``bundle.json`` is rewritten (atomically); the checksummed model and meta-classifier files are untouched,
    so their checksums stay valid. The bundle is loaded again afterwards to validate what was written.

    Args:
        bundle_dir: the bundle directory, or ``"default"``.
        frames: in-domain (H, W, 3) uint8 RGB frames or (image, target) pairs.
        backend: the backend the pipeline runs on.
        progress: show a progress bar.
        data: description of the frames (data set, split, seeds, counts), stored with the calibration.
        total: number of frames, for the progress bar.
        options: ``quantile``, ``target_rate``, ``margin`` of :func:`calibrate`.

    Returns:
        The calibration written.

    Raises:
        BundleError: the bundle does not load (before or after).
        InputError: fewer than 20 frames, a bad frame.
        FaultError: the network failed on a frame.
    """
    bundle = load_bundle(bundle_dir)
    # no "monitor off" warning from the pipeline that is about to calibrate it
    pipeline = AnomalyPipeline.from_bundle(bundle, backend=backend, warn_uncalibrated=False)
    calibration = calibrate(pipeline, frames, data=data, progress=progress, total=total, **options)
    path = bundle.root / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["domain"] = calibration.to_dict()
    tmp = path.with_name(f".{MANIFEST}.tmp")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")  # as write_bundle writes it
    os.replace(tmp, path)
    load_bundle(bundle.root)
    LOG.info("domain monitor of %s calibrated on %d frames: limit %.2f, %.1f %% of them outside", bundle.root,
             calibration.frames, calibration.threshold, 100 * calibration.flagged_fraction)  # fmt: skip
    return calibration


@dataclass(frozen=True)
class SyntheticCalibration:
    """The in-domain frames the default bundle's domain monitor is calibrated on: for every size, ``frames``
    closed-set and ``frames`` hazard frames (one seed per kind and size), and ``drives`` drives of ``drive_frames``
    frames (one seed each); lighting is drawn per frame (day, overcast, dusk, low sun), per drive for drives.

    Seeds: ``seed + 10·s + k`` for size s and kind k (0 closed, 1 hazard); ``seed + 1000 + 100·s + d`` for drive d.
    The default seeds (31000…) differ from every seed the bundle was built, selected or evaluated with.
    """

    seed: int = 31_000
    frames: int = 300
    drives: int = 12
    drive_frames: int = 25
    sizes: tuple[tuple[int, int], ...] = ((256, 512), (512, 1024))

    def __len__(self) -> int:
        return len(self.sizes) * (2 * self.frames + self.drives * self.drive_frames)

    def __iter__(self) -> Iterator[npt.NDArray[np.uint8]]:
        for s, (h, w) in enumerate(self.sizes):
            for k, kind in enumerate(FRAME_KINDS):
                for i in range(self.frames):
                    yield render(kind, self.seed + 10 * s + k, i, h, w)[0]
            for d in range(self.drives):
                for image, _ in iter_drive(self.seed + 1000 + 100 * s + d, self.drive_frames, h, w):
                    yield image

    def identity(self) -> dict[str, Any]:
        """Which frames these are (for ``bundle.json``): per size the seeds and counts, and the lighting counts."""
        parts: list[dict[str, Any]] = []
        lighting: Counter[str] = Counter()
        for s, (h, w) in enumerate(self.sizes):
            for k, kind in enumerate(FRAME_KINDS):
                seed = self.seed + 10 * s + k
                parts.append({"kind": kind, "seed": seed, "frames": self.frames, "size": [h, w]})
                lighting.update(_lighting(kind, seed, i) for i in range(self.frames))
            seeds = [self.seed + 1000 + 100 * s + d for d in range(self.drives)]
            parts.append({"kind": "drive", "seeds": seeds, "frames_per_drive": self.drive_frames, "size": [h, w]})
            for seed in seeds:
                lighting[_drive_lighting(seed)] += self.drive_frames
        return {
            "dataset": "meta_ood_training.synthetic (closed, hazard, drive)", "frames": len(self),
            "parts": parts, "lighting": dict(sorted(lighting.items())),
        }  # fmt: skip


def _lighting(kind: Kind, seed: int, index: int) -> str:
    """The lighting :func:`~meta_ood_training.synthetic.render` draws for a frame (its first use of the frame's rng)."""
    return draw_lighting(np.random.default_rng([seed, index, KINDS.index(kind)])).name


def _drive_lighting(seed: int) -> str:
    """The lighting of a drive (:func:`~meta_ood_training.synthetic.iter_drive`: the scene rng's first draw)."""
    return draw_lighting(np.random.default_rng([seed, 0, 3])).name


def calibrate_synthetic(
    bundle_dir: str | Path = DEFAULT_BUNDLE, frames: SyntheticCalibration | None = None, *, progress: bool = True
) -> DomainCalibration:
    """Calibrate a bundle of the synthetic world (the default bundle) on :class:`SyntheticCalibration` frames."""
    frames = frames or SyntheticCalibration()
    return calibrate_bundle(bundle_dir, frames, progress=progress, data=frames.identity(), total=len(frames))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m meta_ood_training.domain_calibration [BUNDLE]``: calibrate on the synthetic frames."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("bundle", nargs="?", default=str(DEFAULT_BUNDLE), help="bundle directory (default: embedded)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    calibration = calibrate_synthetic(args.bundle)
    for name in calibration.statistics:
        low, high = calibration.limits(name)
        LOG.info("%-18s %8.3f … %8.3f", name, low, high)
    return 0


if __name__ == "__main__":
    sys.exit(main())
