"""Every test here gets the plugin/estimator/task/paper registries back as they were."""

from __future__ import annotations

import pytest

from tests.helpers.registries import isolated_registries  # noqa: F401 - the fixture


@pytest.fixture(autouse=True)
def _restore_registries(isolated_registries: None) -> None:  # noqa: F811
    """Autouse wrapper of tests.helpers.registries.isolated_registries."""
