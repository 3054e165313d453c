"""The short version of scripts/soak.py (`make soak` runs the full 50,000 operations from 32 clients)."""

from __future__ import annotations

import pytest

from scripts import soak

pytestmark = pytest.mark.integration


def test_short_soak_loses_nothing_and_logs_every_read(capsys: pytest.CaptureFixture[str]) -> None:
    code = soak.main(["--ops", "400", "--clients", "8", "--patients", "2", "--max-seconds", "120"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "SOAK PASSED" in out
