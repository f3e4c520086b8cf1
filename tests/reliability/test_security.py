"""Security: nothing unpickles, torch.load only with weights_only=True, bundle paths stay inside the bundle,
engine / model files are checked before use (checksums and build records; see also test_bundle.py and
test_tensorrt_engine.py)."""

from __future__ import annotations

import ast
import json
import os
import shutil
from pathlib import Path

import pytest

from meta_ood_perception.bundle import DEFAULT_BUNDLE, BundleError, load_bundle

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [*(ROOT / "meta_ood_perception").rglob("*.py"), *(ROOT / "training").rglob("*.py"),
           *(ROOT / "benchmarks").rglob("*.py"), ROOT / "launch" / "anomaly.launch.py"]  # fmt: skip


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield ast.unparse(node.func), {k.arg: k.value for k in node.keywords}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_unpickling_anywhere(path):
    tree = ast.parse(path.read_text())
    modules = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not modules & {"pickle", "cloudpickle", "dill", "joblib", "shelve", "marshal"}, path
    for func, kw in _calls(tree):
        if func.endswith("torch.load") or (func == "load" and "weights_only" in kw):
            assert "weights_only" in kw and ast.unparse(kw["weights_only"]) == "True", f"{path}: {func}"
        if func in ("np.load", "numpy.load") and "allow_pickle" in kw:
            assert ast.unparse(kw["allow_pickle"]) == "False", path
        assert not func.endswith(("pickle.load", "pickle.loads", "torch.jit.load")), path


@pytest.fixture
def bundle(tmp_path):
    target = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, target)
    return target


def _edit(path: Path, **changes):
    manifest = json.loads((path / "bundle.json").read_text())
    for key, value in changes.items():
        node = manifest
        *parents, last = key.split(".")
        for part in parents:
            node = node[part]
        node[last] = value
    (path / "bundle.json").write_text(json.dumps(manifest))


def _file_fields(path: Path) -> list[str]:
    manifest = json.loads((path / "bundle.json").read_text())
    return [k for k, v in manifest.items() if isinstance(v, str) and (path / v).is_file()]


def test_bundle_paths_cannot_escape(bundle, tmp_path):
    fields = _file_fields(bundle)
    assert fields
    for i, target in enumerate(("/etc/passwd", "../../outside.bin", "sub/../../x")):
        copy = tmp_path / f"copy_{i}"
        shutil.copytree(bundle, copy)
        _edit(copy, **{fields[0]: target})
        with pytest.raises(BundleError, match="outside the bundle directory"):
            load_bundle(copy)


def test_a_symlink_out_of_the_bundle_is_refused(bundle, tmp_path):
    field = _file_fields(bundle)[0]
    name = json.loads((bundle / "bundle.json").read_text())[field]
    outside = tmp_path / "elsewhere.bin"
    shutil.copy(bundle / name, outside)
    (bundle / name).unlink()
    os.symlink(outside, bundle / name)
    with pytest.raises(BundleError, match="outside the bundle directory"):
        load_bundle(bundle)


def test_every_model_file_is_checked_before_use(bundle):
    for field in _file_fields(bundle):
        name = json.loads((bundle / "bundle.json").read_text())[field]
        data = (bundle / name).read_bytes()
        (bundle / name).write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # one flipped bit
        with pytest.raises(BundleError, match="SHA-256 does not match"):
            load_bundle(bundle)
        (bundle / name).write_bytes(data)
    load_bundle(bundle)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("input.std", [float("inf"), 1.0, 1.0], "finite"),
        ("input.mean", [float("nan"), 0.0, 0.0], "finite"),
        ("input.height", 12.5, "integer"),
        ("checksums", ["model.onnx"], "map file names"),
        ("model.files", {"onnx": 3}, "map file names"),
    ],
)
def test_malformed_manifest_values_are_bundle_errors(bundle, field, value, message):
    _edit(bundle, **{field: value})
    with pytest.raises(BundleError, match=message):
        load_bundle(bundle)


def test_a_manifest_that_is_not_utf8_is_a_bundle_error(bundle):
    (bundle / "bundle.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(BundleError, match="cannot read bundle manifest"):
        load_bundle(bundle)
