"""Every module's own error class sits in the one hierarchy of meta_ood_perception.errors, where its meaning puts it."""

from __future__ import annotations

import pytest

from meta_ood_perception.backends import BackendError
from meta_ood_perception.backends.tensorrt_backend import EngineMismatchError
from meta_ood_perception.bundle import BundleError as ReexportedBundleError
from meta_ood_perception.cli import CLIError
from meta_ood_perception.domain import DomainError
from meta_ood_perception.errors import BundleError, FaultError, InputError, MetaOodError
from meta_ood_perception.meta_classifier import MetaClassifierError
from meta_ood_perception.models import CheckpointError
from meta_ood_training.datasets import DatasetError
from meta_ood_training.make_bundle import MakeBundleError
from meta_ood_training.meta_data import MetaDataError


@pytest.mark.parametrize(
    ("cls", "base"),
    [
        (BackendError, FaultError),  # the backend failed with a valid setting: a node counts a fault
        (EngineMismatchError, BackendError),
        (DomainError, InputError),  # a bad calibration inside bundle.json is reported as a BundleError
        (MetaClassifierError, BundleError),
        (CheckpointError, InputError),
        (MakeBundleError, InputError),
        (MetaDataError, InputError),
        (DatasetError, InputError),
        (CLIError, MetaOodError),
    ],
)
def test_module_errors_derive_from_the_hierarchy(cls, base):
    assert issubclass(cls, base) and issubclass(cls, MetaOodError)


def test_faults_are_not_value_errors_and_the_bundle_error_is_the_one_class():
    assert not issubclass(BackendError, ValueError) and issubclass(BackendError, RuntimeError)
    assert ReexportedBundleError is BundleError
