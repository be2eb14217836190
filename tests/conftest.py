# SPDX-License-Identifier: GPL-2.0-or-later
"""Fixtures shared by test modules: the Linux guest's assets (fetched on first use) and the fuzz
worker process the guest-robustness tests run their kernels in."""

import pytest

from tests import guest_fuzz
from tests.linux_guest import linux_assets  # noqa: F401


@pytest.fixture(scope="module")
def runner():
    """One worker process per test module: an engine abort kills the worker, not pytest."""
    runner = guest_fuzz.Runner()
    yield runner
    runner.close()
