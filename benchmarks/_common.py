"""Shared plumbing for the benchmark scenarios: a private chain + deployment, a bare JSON-RPC client,
an API server in a child process, timing statistics and the machine description.

Nothing here is a benchmark; every scenario module imports what it needs from this file.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from eth_account import Account

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ----------------------------------------------------------------- statistics


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank-with-interpolation percentile (q in 0..100) of ``samples``."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def latency_summary(samples_s: Sequence[float]) -> dict[str, float]:
    """p50/p99/mean in milliseconds."""
    return {
        "p50_ms": round(percentile(samples_s, 50) * 1000, 3),
        "p99_ms": round(percentile(samples_s, 99) * 1000, 3),
        "mean_ms": round(statistics.fmean(samples_s) * 1000, 3) if samples_s else float("nan"),
    }


def growth_exponent(points: Sequence[tuple[float, float]]) -> list[float]:
    """Exponents k of time ~ work**k between successive (work, seconds) points (1 = linear)."""
    import itertools
    import math

    out = []
    for (w1, t1), (w2, t2) in itertools.pairwise(points):
        out.append(round(math.log(t2 / t1) / math.log(w2 / w1), 3))
    return out


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------- bare JSON-RPC


class RawRpc:
    """JSON-RPC over one keep-alive ``http.client`` connection: no web3.py, no requests."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        parsed = urlparse(url)
        self._host, self._port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self._timeout = timeout
        self._conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        self._id = 0

    def _post(self, body: bytes) -> Any:
        for attempt in range(2):
            try:
                self._conn.request("POST", "/", body, {"Content-Type": "application/json"})
                return json.loads(self._conn.getresponse().read())
            except (http.client.HTTPException, ConnectionError):
                self._conn.close()
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        self._id += 1
        body = json.dumps({"jsonrpc": "2.0", "id": self._id, "method": method, "params": list(params)}).encode()
        response = self._post(body)
        if "error" in response:
            raise RuntimeError(f"{method}: {response['error']}")
        return response["result"]

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]], *, check: bool = True) -> list[Any]:
        if not calls:
            return []
        body = json.dumps(
            [{"jsonrpc": "2.0", "id": i, "method": m, "params": list(p)} for i, (m, p) in enumerate(calls)]
        ).encode()
        responses = sorted(self._post(body), key=lambda r: r["id"])
        if check:
            errors = [r["error"] for r in responses if "error" in r]
            if errors:
                raise RuntimeError(f"{len(errors)} of {len(calls)} batched calls failed, first: {errors[0]}")
        return [r.get("result") for r in responses]

    def wait_receipt(self, tx_hash: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            receipt = self.call("eth_getTransactionReceipt", [tx_hash])
            if receipt is not None:
                return dict(receipt)
            if time.monotonic() > deadline:
                raise TimeoutError(f"no receipt for {tx_hash}")
            time.sleep(0.001)

    def close(self) -> None:
        self._conn.close()


# ----------------------------------------------------------------- a private chain + deployment


@dataclass
class Stack:
    """A private anvil (no state file: nothing is dumped while measuring), the ledger deployed and the
    demo roles onboarded, a data dir, and the settings a service on it uses."""

    data_dir: Path
    rpc_url: str
    deployment: Any
    settings: Any
    keys: tuple[str, ...]
    anvil: Any = None
    _services: list[Any] = field(default_factory=list)

    @property
    def chain_port(self) -> int:
        return int(urlparse(self.rpc_url).port or 0)

    def account(self, index: int) -> Any:
        return Account.from_key(self.keys[index])

    def services(self, **overrides: Any) -> Any:
        from ledger_service.bootstrap import bootstrap

        settings = self.settings.model_copy(update=overrides) if overrides else self.settings
        services = bootstrap(settings, self.deployment)
        self._services.append(services)
        return services

    def env(self, **extra: str) -> dict[str, str]:
        """``CONSENT_LEDGER_*`` variables that make a child process use this stack."""
        from scripts.soak import raised_limits

        s = self.settings
        env = {
            **os.environ,
            "CONSENT_LEDGER_DATA_DIR": str(self.data_dir),
            "CONSENT_LEDGER_RPC_URL": self.rpc_url,
            "CONSENT_LEDGER_DEPLOYER_KEY": self.keys[0],
            "CONSENT_LEDGER_RELAYER_KEY": self.keys[0],
            "CONSENT_LEDGER_PROVIDER_KEYS": f"{self.keys[1]},{self.keys[2]}",
            "CONSENT_LEDGER_CONFIRMATIONS": str(s.confirmations),
            "CONSENT_LEDGER_DISCLOSURE_MODE": s.disclosure_mode,
            "PYTHONPATH": str(REPO),
            # The benchmarks measure the service's own cost: the rate limits a public server keeps
            # (docs/operations.md, "Rate limits") would refuse that load from one loopback client.
            **raised_limits(clients=64),
        }
        env.update(extra)
        return env


@contextlib.contextmanager
def stack(
    *, disclosure_mode: str = "per-read", anvil_args: Sequence[str] = (), **settings_overrides: Any
) -> Iterator[Stack]:
    """A :class:`Stack`; ``anvil_args`` are extra anvil flags (e.g. ``--steps-tracing`` for opcode traces)."""
    from ledger_service.chain.anvil import AnvilProcess
    from ledger_service.chain.deploy import Deployment, deploy_ledger, onboard_demo
    from ledger_service.chain.ledger import ConsentLedgerContract, ledger_codec
    from ledger_service.chain.rpc import RpcClient
    from ledger_service.chain.sender import TransactionSender
    from ledger_service.settings import ANVIL_DEV_KEYS, Settings

    tmp = Path(tempfile.mkdtemp(prefix="consent-bench-"))

    class _Anvil(AnvilProcess):
        def command(self) -> list[str]:
            return [*super().command(), *anvil_args]

    anvil = _Anvil(port=free_port(), log_file=tmp / "anvil.log").start()
    stk: Stack | None = None
    try:
        rpc = RpcClient(anvil.url, timeout=60.0)
        admin = ANVIL_DEV_KEYS[0]
        codec = ledger_codec()
        sender = TransactionSender(rpc, admin, codec, chain_id=rpc.chain_id())
        deployment = deploy_ledger(sender, sender.address)
        demo = onboard_demo(ConsentLedgerContract(rpc, deployment.ledger_address, codec, sender))
        deployment = Deployment(**{**deployment.__dict__, "demo": demo})
        data_dir = tmp / "data"
        settings = Settings(
            data_dir=data_dir,
            rpc_url=anvil.url,
            deployer_key=admin,
            relayer_key=admin,
            provider_keys=f"{ANVIL_DEV_KEYS[1]},{ANVIL_DEV_KEYS[2]}",
            confirmations=0,
            receipt_timeout=120.0,
            rpc_timeout=60.0,
            disclosure_mode=disclosure_mode,
            **settings_overrides,
        )
        data_dir.mkdir(parents=True)
        deployment.save(settings.deployment_file)
        stk = Stack(data_dir, anvil.url, deployment, settings, tuple(ANVIL_DEV_KEYS), anvil)
        yield stk
    finally:
        if stk is not None:
            for services in stk._services:
                with contextlib.suppress(Exception):
                    services.close()
        anvil.stop()
        shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------- the API in a child process


@dataclass
class ApiServer:
    url: str
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def api_server(stk: Stack, *, workers_env: dict[str, str] | None = None) -> Iterator[ApiServer]:
    """``benchmarks._server`` (create_app + uvicorn + a trivial endpoint) in a child process on ``stk``."""
    port = free_port()
    log_path = stk.data_dir / f"api-{port}.log"
    with open(log_path, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._server", "--port", str(port)],
            cwd=REPO,
            env=stk.env(**(workers_env or {})),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"API server exited: {log_path.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/bench/trivial")
                if conn.getresponse().status == 200:
                    conn.close()
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("API server did not start in 60 s")
            time.sleep(0.1)
        yield ApiServer(url, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class HttpClient:
    """A keep-alive ``http.client`` connection for load generation (much lighter than httpx per request)."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        parsed = urlparse(url)
        self._host, self._port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self._headers = headers or {}
        self._conn = http.client.HTTPConnection(self._host, self._port, timeout=300)

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes, dict[str, str]]:
        headers = dict(self._headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in range(2):
            try:
                self._conn.request(method, path, data, headers)
                response = self._conn.getresponse()
                return response.status, response.read(), dict(response.getheaders())
            except (http.client.HTTPException, ConnectionError):
                self._conn.close()
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=300)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._conn.close()


def run_concurrent(
    workers: int, jobs: Sequence[Any], work: Callable[[int, Any], None]
) -> tuple[float, list[float], list[BaseException]]:
    """Run ``work(worker_index, job)`` over ``jobs`` on ``workers`` threads (a shared queue).

    Returns (wall seconds, per-job latencies, errors).
    """
    import queue
    import threading

    pending: queue.SimpleQueue[Any] = queue.SimpleQueue()
    for job in jobs:
        pending.put(job)
    latencies: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start_gate = threading.Barrier(workers + 1)

    def loop(index: int) -> None:
        start_gate.wait()
        while True:
            try:
                job = pending.get_nowait()
            except queue.Empty:
                return
            began = time.perf_counter()
            try:
                work(index, job)
            except BaseException as exc:  # reported by the caller
                with lock:
                    errors.append(exc)
                continue
            elapsed = time.perf_counter() - began
            with lock:
                latencies.append(elapsed)

    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(workers)]
    for thread in threads:
        thread.start()
    start_gate.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - began, latencies, errors


# ----------------------------------------------------------------- the machine


def machine() -> dict[str, Any]:
    import importlib.metadata as md

    def version(name: str) -> str | None:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None

    memory_gb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gb = round(int(line.split()[1]) / 2**20, 1)
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    anvil_version = None
    with contextlib.suppress(Exception):
        from ledger_service.chain.anvil import find_anvil

        anvil_version = subprocess.run(
            [find_anvil(), "--version"], capture_output=True, text=True, timeout=10
        ).stdout.splitlines()[0]
    return {
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": memory_gb,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "anvil": anvil_version,
        "packages": {
            name: version(name)
            for name in (
                "web3",
                "eth-account",
                "coincurve",
                "fastapi",
                "uvicorn",
                "cryptography",
                "sqlalchemy",
                "matplotlib",
            )
        },
    }


def dump(result: dict[str, Any]) -> None:
    """Print a scenario's result as JSON on stdout (what ``python -m benchmarks.<name>`` shows)."""
    print(json.dumps(result, indent=2, default=str))


@contextlib.contextmanager
def custodian_servers(stk: Stack, total: int = 3) -> Iterator[list[str]]:
    """``total`` key custodians (``consent-ledger serve custodian``), each a child process with its own data dir
    on ``stk``'s chain, as production runs them; yields their base URLs."""
    processes: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    try:
        for index in range(1, total + 1):
            data_dir = stk.data_dir / "bench-custodians" / str(index)
            data_dir.mkdir(parents=True, exist_ok=True)
            stk.deployment.save(data_dir / "deployment.json")
            port = free_port()
            env = {k: v for k, v in stk.env().items() if not k.startswith("CONSENT_LEDGER_")}
            env.update({"CONSENT_LEDGER_RPC_URL": stk.rpc_url, "CONSENT_LEDGER_CUSTODIAN_INDEX": str(index)})
            with open(data_dir / "custodian.log", "wb") as out:
                processes.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "ledger_service.cli",
                            "serve",
                            "custodian",
                            "--data-dir",
                            str(data_dir),
                            "--port",
                            str(port),
                        ],
                        cwd=REPO,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
            urls.append(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 60
        for url, process in zip(urls, processes, strict=True):
            port = int(urlparse(url).port or 0)
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"custodian {url} exited {process.returncode}")
                with contextlib.suppress(OSError):
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                    conn.request("GET", "/v1/custodian")
                    if conn.getresponse().status == 200:
                        conn.close()
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"custodian {url} did not start in 60 s")
                time.sleep(0.1)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
