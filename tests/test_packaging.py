"""The repository is a ROS 2 ament_python package and a pip project; the runtime stands alone."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_package_xml_is_format3_ament_python():
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == "meta_ood_perception"
    assert root.find("export/build_type").text == "ament_python"
    assert (ROOT / "resource" / "meta_ood_perception").is_file()


def _imported_modules(nodes) -> list[str]:
    names = []
    for node in nodes:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_runtime_never_imports_training_code():
    # Only the CLI may reach the offline package, and only lazily inside the training subcommands.
    for path in (ROOT / "meta_ood_perception").rglob("*.py"):
        tree = ast.parse(path.read_text())
        everywhere = _imported_modules(ast.walk(tree))
        at_import_time = _imported_modules(tree.body)
        offline = {"meta_ood_training", "training"}
        assert not any(n.split(".")[0] in offline for n in at_import_time), path
        if path.name != "cli.py":
            assert not any(n.split(".")[0] in offline for n in everywhere), path


def test_cli_imports_without_the_offline_dependencies():
    code = (
        "import sys\n"
        "for name in ('torch', 'sklearn', 'matplotlib', 'meta_ood_training'): sys.modules[name] = None\n"
        "from meta_ood_perception.cli import main\n"
        "code = main(['meta-cv', '--features', 'x.npz', '--classifier', 'lr', '--report', 'r.json'])\n"
        "assert code == 2, code\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "needs the offline package" in result.stderr
    assert "pip install" in result.stderr


def test_numpy_core_works_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np\n"
        "from meta_ood_perception.metrics import component_metrics\n"
        "from meta_ood_perception.scores import anomaly_score\n"
        "p = np.full((19, 8, 8), 1 / 19, np.float32)\n"
        "m = component_metrics(p, anomaly_score(p) >= 0.7)\n"
        "assert len(m) == 1 and m.features.shape == (1, 75)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_training_is_installed_as_meta_ood_training():
    import meta_ood_training

    assert Path(meta_ood_training.__file__).resolve().parent == ROOT / "training"


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text().splitlines()
    marker = readme.index("<!-- test-command -->")
    command = next(line for line in readme[marker + 1 :] if not line.startswith("```"))
    assert "pytest" in command and "python3.11 -m venv" in command
    assert "test-command" in (ROOT / ".ci" / "run").read_text()


def _colcon() -> str | None:
    beside_python = Path(sys.executable).parent / "colcon"  # the venv's, also when its bin/ is not on PATH
    return str(beside_python) if beside_python.is_file() else shutil.which("colcon")


@pytest.mark.skipif(_colcon() is None, reason="colcon is not installed (pip install -e .[dev])")
def test_colcon_build_installs_both_packages(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "meta_ood_perception").symlink_to(ROOT, target_is_directory=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLCON")}
    subprocess.run(
        [_colcon(), "--log-base", str(tmp_path / "log"), "build", "--base-paths", str(src),
         "--build-base", str(tmp_path / "build"), "--install-base", str(tmp_path / "install")],
        check=True, cwd=tmp_path, env=env, capture_output=True,
    )  # fmt: skip
    prefix = tmp_path / "install" / "meta_ood_perception"
    site = next(prefix.glob("lib/python3*/site-packages"))
    assert (site / "meta_ood_perception" / "metrics.py").is_file()
    assert (site / "meta_ood_training" / "__init__.py").is_file()
    assert not (site / "training").exists()
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "meta_ood_perception").is_file()
    assert (prefix / "share" / "meta_ood_perception" / "package.xml").is_file()
