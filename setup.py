"""Build script: the ROS 2 (ament_python) package ``meta_ood_perception`` plus the offline ``meta_ood_training``.

The offline package lives in ``training/`` and is installed under the import name ``meta_ood_training``
(``package_dir``), so nothing called ``training`` lands in site-packages.
"""

from setuptools import find_packages, setup

PACKAGE_NAME = "meta_ood_perception"

runtime_packages = find_packages(include=[PACKAGE_NAME, f"{PACKAGE_NAME}.*"])
training_packages = ["meta_ood_training"] + [f"meta_ood_training.{name}" for name in find_packages(where="training")]

setup(
    name=PACKAGE_NAME,
    packages=runtime_packages + training_packages,
    package_dir={"meta_ood_training": "training"},
    package_data={PACKAGE_NAME: ["py.typed", "data/default_bundle/*"], "meta_ood_training": ["py.typed"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE_NAME}"]),
        (f"share/{PACKAGE_NAME}", ["package.xml"]),
        (f"share/{PACKAGE_NAME}/launch", ["launch/anomaly.launch.py", "launch/multi_camera.launch.py"]),
        (
            f"share/{PACKAGE_NAME}/config",
            [
                "config/anomaly_node.param.yaml",
                "config/anomaly_node.schema.json",
                "config/anomaly.rviz",
                "config/foxglove_layout.json",
            ],
        ),
    ],
)
