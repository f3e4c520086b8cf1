from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

TESTS = Path(__file__).resolve().parent
REFERENCE = TESTS / "data" / "reference"
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(TESTS.parent / "benchmarks"))

CASES = sorted(p.stem for p in REFERENCE.glob("case_*.npz") if not p.stem.endswith("_mask"))
MASK_CASES = sorted(p.stem for p in REFERENCE.glob("case_*_mask.npz"))


def load_case(name: str) -> dict[str, np.ndarray]:
    with np.load(REFERENCE / f"{name}.npz") as data:
        return {k: data[k] for k in data.files}


def load_np1(name: str) -> dict[str, np.ndarray]:
    with np.load(REFERENCE / "np1" / f"{name}.npz") as data:
        return {k: data[k] for k in data.files}


def random_probs(rng: np.random.Generator, c: int, h: int, w: int, temperature: float = 1.0) -> np.ndarray:
    """(C, H, W) float32 softmax of normal logits; low temperature → confident, high → uncertain."""
    logits = rng.normal(size=(c, h, w)) / temperature
    e = np.exp(logits - logits.max(axis=0))
    return (e / e.sum(axis=0)).astype(np.float32)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
