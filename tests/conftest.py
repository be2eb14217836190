# SPDX-License-Identifier: GPL-2.0-or-later
"""Fixtures shared by test modules: the Linux guest's assets (fetched on first use)."""

from tests.linux_guest import linux_assets  # noqa: F401
