# SPDX-License-Identifier: GPL-2.0-or-later
"""The Linux guest's assets for tests: fetched on first use, skipped (locally) or failed (in CI) without them.

``linux_assets`` is a session fixture; tests/conftest.py makes it available with
``from tests.linux_guest import linux_assets  # noqa: F401``.  When the assets cannot be had (no
apt, no network, not root for ``apt-get update``, no gcc), the test is skipped with the reason, except
when the environment variable CI is "true": there a missing guest is a failure, not a skip.
"""

from __future__ import annotations

import os

import pytest

from firmware.linux.assets import Assets, AssetsUnavailable, ensure_assets


def require_linux_assets() -> Assets:
    """The assets, fetching and building them if needed; skips or fails the calling test otherwise."""
    try:
        return ensure_assets()
    except AssetsUnavailable as reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Linux guest assets unavailable in CI: {reason}", pytrace=False)
        pytest.skip(f"Linux guest assets unavailable: {reason}")


@pytest.fixture(scope="session")
def linux_assets() -> Assets:
    return require_linux_assets()
