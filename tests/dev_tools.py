# SPDX-License-Identifier: GPL-2.0-or-later
"""Development tools some tests run (mypy, build): skipped locally when missing, failed in CI.

They come with the project's extras (``pip install -e '.[test,lint]'``, as .ci/run does); a
developer's venv made before they were added may lack them, and then those tests are skipped
with the reason, except when the environment variable CI is "true": there a missing tool is a
failure, not a skip.
"""

from __future__ import annotations

import importlib.util
import os

import pytest


def require_tool(module: str, extra: str) -> None:
    """Skip (or in CI fail) the calling test unless ``module`` is importable."""
    if importlib.util.find_spec(module) is not None:
        return
    reason = f"{module} is not installed (it is in the '{extra}' extra: pip install -e '.[{extra}]')"
    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)
