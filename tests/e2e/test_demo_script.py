"""scripts/demo.py — a stand-alone client built from the public surfaces only — against `consent-ledger up`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_demo_plays_the_whole_story_over_http(tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ledger_service.cli",
            "up",
            "--data-dir",
            str(tmp_path),
            "--port",
            str(port),
            "--chain-port",
            str(free_port()),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        env={
            **os.environ,
            "CONSENT_LEDGER_METRICS_PORT": str(free_port()),
            "CONSENT_LEDGER_CUSTODIAN_PORTS_FROM": "0",
        },  # port + 1 and + 10 may be taken
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        demo = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "demo.py"), "--url", url],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert demo.returncode == 0, demo.stdout + demo.stderr
        out = demo.stdout
        for step in (
            "uploads a FHIR Observation",
            "grants Demo Clinic",
            "reads the record",
            "sees the disclosure",
            "revokes",
            "refused now",
            "verifies",
        ):
            assert step in out, out
        assert "403 application/problem+json" in out
        assert "ok=True" in out
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
