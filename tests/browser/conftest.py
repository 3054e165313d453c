"""Browser-test fixtures: Debian chromium via Playwright, and the portal served by the real
service (``consent-ledger up``: its own anvil, data dir and free ports)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CONSENT_LEDGER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = ROOT / "test-artifacts" / "screenshots"
DOCS_SHOTS = ROOT / "docs" / "screenshots"
# the anvil JSON-RPC URL of each real portal (by its base URL), for tests that check the chain itself
CHAIN_RPC: dict[str, str] = {}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_health(url: str, proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    vendor = ROOT / "consent_api" / "static" / "vendor"
    vendored = (
        "ethers.min.js",
        "swagger-ui-bundle.js",
        "shamir-secret-sharing/index.js",
        "hpke/core/mod.js",
        "qrcode.mjs",
    )
    if not all((vendor / name).exists() for name in vendored):
        subprocess.run([str(ROOT / "scripts" / "vendor_portal.sh")], check=True)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def real_portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``consent-ledger up`` as a subprocess (own data dir, free ports), waited for on GET /health."""
    exe = ROOT / ".venv" / "bin" / "consent-ledger"
    if not exe.exists():
        exe = Path(shutil.which("consent-ledger") or "consent-ledger")
    data_dir = tmp_path_factory.mktemp("portal-data")
    port, chain_port = _free_port(), _free_port()
    log = (data_dir / "server.log").open("wb")
    # The metrics listener gets a free port of its own too (its default, port + 1, may be taken). The portal is
    # also reached at http://localhost:{port} (passkeys need a domain name as their relying party, not
    # 127.0.0.1), which `up` on a loopback address accepts as its own origin with no setting.
    env = {
        **os.environ,
        "CONSENT_LEDGER_METRICS_PORT": str(_free_port()),
        "CONSENT_LEDGER_CUSTODIAN_PORTS_FROM": "0",
    }
    proc = subprocess.Popen(
        [str(exe), "up", "--data-dir", str(data_dir), "--port", str(port), "--chain-port", str(chain_port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_health(f"{base}/health", proc, 180)
    except Exception as exc:
        proc.kill()
        log.close()
        tail = (data_dir / "server.log").read_text(errors="replace")[-3000:]
        pytest.fail(f"consent-ledger up did not serve {base}: {exc}\n{tail}")
    CHAIN_RPC[base] = f"http://127.0.0.1:{chain_port}"
    yield base
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    log.close()


@pytest.fixture
def portal(real_portal: str) -> tuple[str, str]:
    """(kind, base URL) of the portal under test: the real service."""
    return "real", real_portal
