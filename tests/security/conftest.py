"""`consent-ledger up` as a child process for attack tests: its own anvil, data dir and free ports."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from ledger_service.domain import siwe
from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[2]


class DevServer:
    """The embedded default (``consent-ledger up``), started with the usual login umask 022 so that
    the modes of what it creates are its own doing. The log is kept outside the data dir."""

    def __init__(self, data_dir: Path, log: Path, *, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.log = log
        self.port = free_port()
        self.chain_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 180.0) -> DevServer:
        cmd = [
            sys.executable, "-m", "ledger_service.cli", "up", "--data-dir", str(self.data_dir),
            "--port", str(self.port), "--chain-port", str(self.chain_port),
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONSENT_LEDGER_")}
        # The metrics listener gets a free port of its own (its default, port + 1, may be taken).
        env.update({"PYTHONUNBUFFERED": "1", "CONSENT_LEDGER_METRICS_PORT": str(free_port()), **self.env})
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO, umask=0o022, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"consent-ledger up exited {self.process.returncode}:\n{self.output()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"consent-ledger up did not serve {self.url} in {timeout:.0f}s:\n{self.output()[-3000:]}")

    def stop(self, timeout: float = 60.0) -> None:
        """Ctrl+C: the chain shuts down cleanly and saves its state."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def chain_id(self) -> int:
        return int(httpx.get(self.url + "/v1/chain", timeout=10).json()["chainId"])


def sign_in_body(server: DevServer, account: LocalAccount, *, domain: str, uri: str) -> dict[str, str]:
    """A fresh nonce from ``server`` in an EIP-4361 message for ``domain``/``uri``, signed by ``account``."""
    nonce = httpx.get(server.url + "/v1/auth/nonce", timeout=10).json()["nonce"]
    now = datetime.now(UTC)
    message = siwe.render(
        siwe.SiweMessage(
            domain=domain,
            address=account.address,
            statement="Sign in to Consent Ledger",
            uri=uri,
            version="1",
            chain_id=server.chain_id(),
            nonce=nonce,
            issued_at=now,
            expiration_time=now + timedelta(minutes=10),
            not_before=None,
            request_id=None,
            resources=(),
        )
    )
    signature = Account.sign_message(encode_defunct(text=message), account.key).signature
    return {"message": message, "signature": "0x" + bytes(signature).hex()}


def assert_sign_in_refused(response: httpx.Response, needle: str) -> None:
    """Refused the way every other bad sign-in is: 401 problem+json ``invalid-sign-in``, saying why."""
    assert response.status_code == 401, f"sign-in was not refused: {response.status_code} {response.text}"
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["type"] == "/problems/invalid-sign-in", body
    assert needle in body["detail"], body
