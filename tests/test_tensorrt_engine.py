"""TensorRT engine records and checks (pure parts here; the engine build and run need a GPU and TensorRT)."""

from __future__ import annotations

import importlib.util

import pytest

from meta_ood_perception.backends.tensorrt_backend import EngineInfo, EngineMismatchError, check_engine
from meta_ood_perception.meta_classifier import sha256_file


@pytest.fixture
def engine(tmp_path):
    path = tmp_path / "m.engine"
    path.write_bytes(b"serialized engine bytes")
    info = EngineInfo("10.7.0", "NVIDIA H100 80GB HBM3", "9.0", True, (1, 3, 128, 256),
                      {"logits": (1, 19, 128, 256)}, sha256_file(path))  # fmt: skip
    info.write(path)
    return path, info


def system(**kw):
    base = {"tensorrt_version": "10.7.0", "gpu": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}
    return {**base, **kw}


def test_engine_record_round_trips_and_matches(engine):
    path, info = engine
    assert EngineInfo.read(path) == info
    check_engine(path, info, input_shape=(1, 3, 128, 256), num_classes=19, **system())


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"tensorrt_version": "10.8.1"}, "built with TensorRT 10.7.0, running TensorRT 10.8.1"),
        ({"gpu": "NVIDIA L4", "compute_capability": "8.9"}, "built for NVIDIA H100"),
    ],
)
def test_engine_for_another_tensorrt_or_gpu_is_rejected(engine, kw, message):
    path, info = engine
    with pytest.raises(EngineMismatchError, match=message):
        check_engine(path, info, **system(**kw))


def test_engine_shape_classes_and_content_are_checked(engine):
    path, info = engine
    with pytest.raises(EngineMismatchError, match="input shape"):
        check_engine(path, info, input_shape=(1, 3, 256, 512), **system())
    with pytest.raises(EngineMismatchError, match="19 classes, the bundle has 20"):
        check_engine(path, info, num_classes=20, **system())
    path.write_bytes(b"tampered")
    with pytest.raises(EngineMismatchError, match="SHA-256"):
        check_engine(path, info, **system())
    path.with_name("m.engine.json").write_text("{")
    with pytest.raises(EngineMismatchError, match="unreadable"):
        EngineInfo.read(path)
    with pytest.raises(EngineMismatchError, match="no build record"):
        EngineInfo.read(path.with_name("other.engine"))


def test_engine_from_other_weights_is_rejected(tmp_path):
    path = tmp_path / "m.engine"
    path.write_bytes(b"engine")
    info = EngineInfo("10.7.0", "NVIDIA H100 80GB HBM3", "9.0", True, (1, 3, 8, 8), {"logits": (1, 19, 8, 8)},
                      sha256_file(path), onnx_sha256="a" * 64)  # fmt: skip
    check_engine(path, info, onnx_sha256="a" * 64, **system())
    with pytest.raises(EngineMismatchError, match="another ONNX graph"):
        check_engine(path, info, onnx_sha256="b" * 64, **system())


def test_a_bundle_without_an_engine_names_the_way_to_build_one(tmp_path, monkeypatch):
    from meta_ood_perception.backends.tensorrt_backend import TensorRTBackend, engine_cache_path
    from meta_ood_perception.bundle import load_bundle
    from meta_ood_perception.errors import ConfigError

    bundle = load_bundle("default")
    with pytest.raises(ConfigError, match="--rebuild; node parameter: trt_rebuild"):
        TensorRTBackend.from_bundle(bundle)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cache = engine_cache_path(bundle.file("onnx"))
    assert cache.parent == tmp_path / "meta_ood_perception" / "engines" and cache.suffix == ".engine"


def test_tensorrt_backend_without_tensorrt_is_a_clear_error():
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here; this checks the message on machines without it")
    from meta_ood_perception.backends import create_backend
    from meta_ood_perception.bundle import load_bundle
    from meta_ood_perception.errors import ConfigError

    with pytest.raises(ConfigError, match="needs NVIDIA TensorRT"):
        create_backend("tensorrt", load_bundle("default"), engine="x.engine")


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None, reason="TensorRT is not installed (needs a GPU)")
def test_build_and_run_engine_on_the_gpu(tmp_path):  # pragma: no cover - GPU machines only
    import numpy as np

    from meta_ood_perception.backends import create_backend
    from meta_ood_perception.backends.tensorrt_backend import build_engine
    from meta_ood_perception.bundle import load_bundle

    bundle = load_bundle("default")
    h, w = bundle.input_size
    build_engine(bundle.file("onnx"), tmp_path / "m.engine", input_shape=(1, 3, h, w), fp16=False)
    trt = create_backend("tensorrt", bundle, engine=tmp_path / "m.engine")
    ort = create_backend("onnxruntime", bundle)
    x = np.random.default_rng(0).normal(size=(1, 3, h, w)).astype(np.float32)
    np.testing.assert_allclose(trt.run(x)["logits"], ort.run(x)["logits"], atol=1e-3)
