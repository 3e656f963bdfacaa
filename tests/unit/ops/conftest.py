"""promtool for the ops tests: skipped on a developer machine without it, a failure in CI."""

from __future__ import annotations

import os
import shutil

import pytest


@pytest.fixture()
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):  # .ci/run installed it (scripts/install-test-deps.sh): its absence is a failure
            pytest.fail("promtool is missing: run scripts/install-test-deps.sh (Debian package prometheus)")
        pytest.skip("promtool is not installed (scripts/install-test-deps.sh installs prometheus)")
    return path
