"""meta_ood_perception: out-of-distribution road-hazard detection for camera semantic segmentation.

The runtime core is ROS-free and works with numpy alone: :mod:`.scores` (anomaly score and heat maps),
:mod:`.components` (OoD mask components) and :mod:`.metrics` (the 75 MetaSeg component metrics).
"""

__version__ = "0.1.0"
