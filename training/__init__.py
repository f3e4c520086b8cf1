"""meta_ood_training: offline datasets, training, evaluation and export (installed from ``training/``).

Nothing in the runtime package :mod:`meta_ood_perception` imports this package.
"""
