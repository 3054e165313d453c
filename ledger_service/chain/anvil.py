"""Start and stop a local anvil dev chain whose state persists in the data dir."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType

import requests

from ledger_service.chain.sender import NonceManager
from ledger_service.errors import ChainUnavailable, ConfigurationError

REPO_ROOT = Path(__file__).resolve().parents[2]


def find_anvil() -> str:
    local = REPO_ROOT / "node_modules" / ".bin" / "anvil"
    if local.exists():
        return str(local)
    found = shutil.which("anvil")
    if found:
        return found
    raise ConfigurationError("anvil not found: run `npm ci` (or `make setup`) in the repository root")


def _rpc_ready(url: str) -> bool:
    try:
        response = requests.post(
            url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}, timeout=1
        )
        return response.ok
    except requests.RequestException:
        return False


PERSISTED_STATES = 100


class AnvilProcess:
    """A child anvil process. ``stop()`` sends SIGINT so anvil dumps its state on exit."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 8545,
        chain_id: int = 31337,
        state_file: Path | None = None,
        block_time: int | None = None,
        log_file: Path | None = None,
        state_interval: int = 30,
    ) -> None:
        self.host = host
        self.port = port
        self.chain_id = chain_id
        self.state_file = state_file
        self.block_time = block_time
        self.log_file = log_file
        self.state_interval = state_interval
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        cmd = [find_anvil(), "--host", self.host, "--port", str(self.port), "--chain-id", str(self.chain_id)]
        if self.state_file is not None:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            # --state loads the file if present and dumps on exit; the interval bounds what a
            # crash (kill -9) can lose. Historical states are not kept: dumping them grows with
            # every block and stalls the node under load (blocks, receipts and logs are kept).
            cmd += ["--state", str(self.state_file), "--state-interval", str(self.state_interval)]
        if self.block_time is not None:
            cmd += ["--block-time", str(self.block_time)]
        # anvil moves the states of older blocks to disk, by default without limit and under
        # ~/.foundry (tens of GB over a long run, which also slowed it). Keep 100 on disk, beside
        # the chain's own files so they go with them; older states are dropped (nothing here runs
        # calls that far back; the blocks, receipts and logs themselves are all kept).
        cmd += ["--max-persisted-states", str(PERSISTED_STATES)]
        home = self.state_file.parent if self.state_file else self.log_file.parent if self.log_file else None
        if home is not None:
            cmd += ["--cache-path", str(home / "anvil-history")]
        return cmd

    def start(self, timeout: float = 30.0) -> AnvilProcess:
        if _rpc_ready(self.url):
            raise ChainUnavailable(f"something already listens on {self.url}; pick another --chain-port")
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
        self._process = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ChainUnavailable(f"anvil exited with status {self._process.returncode} (see {self.log_file})")
            if _rpc_ready(self.url):
                NonceManager.forget_node(self.url)
                return self
            time.sleep(0.05)
        self.stop()
        raise ChainUnavailable(f"anvil did not answer on {self.url} within {timeout:.0f}s")

    def stop(self, timeout: float = 20.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        # Stop mining first. anvil still answers (and automines) while it writes its state after
        # SIGINT, so a transaction mined in that moment could get its receipt, be acknowledged, and
        # then be missing after a restart. A transaction arriving now stays unmined and gets no receipt.
        for method, params in (("evm_setAutomine", [False]), ("evm_setIntervalMining", [0])):
            with contextlib.suppress(requests.RequestException):
                requests.post(self.url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, timeout=2)
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def kill(self) -> None:
        """SIGKILL, for fault-injection tests: no state dump."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> AnvilProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
