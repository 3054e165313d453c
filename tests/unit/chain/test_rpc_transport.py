"""RpcClient's keep-alive transport against a tiny real JSON-RPC server (stdlib http.server in a thread).

The server names the TCP connection each answer came on (the client's port), so reuse, retries and closes
are observed from the other end of the socket rather than inferred from the client's internals.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ledger_service.chain.rpc import RpcClient
from ledger_service.chain.wire import RpcError
from ledger_service.errors import ChainUnavailable


class _Node(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # the default 5 resets some of 16 simultaneous connects

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode = "ok"  # ok | drop (read the request, close without answering) | garbage | status
        self.release = threading.Event()  # lets "slow" requests answer
        self.lock = threading.Lock()
        self.requests = 0
        self.seen: list[tuple[str, str | None, str | None]] = []  # path, Authorization, Content-Type
        self.ports: set[int] = set()  # one per TCP connection used

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server: _Node

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, Nagle + delayed ACK stall each answer ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, request: dict[str, Any]) -> dict[str, Any]:
        method = request["method"]
        if method == "fail":
            error = {"code": 3, "message": "execution reverted", "data": "0x1234"}
            return {"jsonrpc": "2.0", "id": request["id"], "error": error}
        if method == "slow":
            self.server.release.wait(5)
        result: Any = self.client_address[1] if method in ("who", "bye", "slow") else request["params"]
        return {"jsonrpc": "2.0", "id": request["id"], "result": result}

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        node = self.server
        with node.lock:
            node.requests += 1
            node.ports.add(self.client_address[1])
            node.seen.append((self.path, self.headers.get("Authorization"), self.headers.get("Content-Type")))
        if node.mode == "drop":
            self.close_connection = True
            return
        status, payload = 200, b"<html>502 bad gateway</html>"
        if node.mode == "status":
            status, payload = 503, b'{"jsonrpc":"2.0","id":1,"result":"0x1"}'
        elif node.mode == "ok":
            request = json.loads(body)
            if isinstance(request, list):  # a batch, answered out of order as nodes may
                payload = json.dumps([self._answer(r) for r in reversed(request)]).encode()
            else:
                payload = json.dumps(self._answer(request)).encode()
                # "bye": answer normally (no "Connection: close"), then drop the kept-alive socket.
                self.close_connection = request["method"] == "bye"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def node() -> Iterator[_Node]:
    server = _Node()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield server
    server.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def rpc(node: _Node) -> Iterator[RpcClient]:
    client = RpcClient(node.url + "/", timeout=2.0)
    yield client
    client.close()


def _dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_keep_alive_connection_serves_successive_calls(node: _Node, rpc: RpcClient) -> None:
    ports = {rpc.request("who") for _ in range(10)}
    assert len(ports) == 1
    assert rpc.request("echo", ["a", 1]) == ["a", 1]
    assert node.requests == 11
    assert {content_type for _, _, content_type in node.seen} == {"application/json"}


def test_url_path_query_port_and_credentials_are_honoured(node: _Node) -> None:
    port = node.server_address[1]
    client = RpcClient(f"http://alice:s%40cret@127.0.0.1:{port}/rpc/v1?key=k1", timeout=2.0)
    try:
        assert client.request("echo", [7]) == [7]
    finally:
        client.close()
    # "alice:s@cret", base64
    assert node.seen == [("/rpc/v1?key=k1", "Basic YWxpY2U6c0BjcmV0", "application/json")]


def test_connection_closed_by_server_is_retried_once_transparently(node: _Node, rpc: RpcClient) -> None:
    first = rpc.request("bye")  # the server closes this connection after answering
    time.sleep(0.05)
    before = node.requests
    second = rpc.request("who")
    assert second != first, "the stale connection was not replaced"
    assert node.requests == before + 1, "the request reached the server more than once"
    assert rpc.request("who") == second  # and the fresh one is kept alive


def test_failure_on_a_reused_connection_is_retried_exactly_once(node: _Node, rpc: RpcClient) -> None:
    rpc.request("who")
    node.mode = "drop"
    before = node.requests
    with pytest.raises(ChainUnavailable, match="unreachable: RemoteDisconnected"):
        rpc.request("who")
    assert node.requests == before + 2  # the reused connection, then one fresh one


def test_failure_on_a_fresh_connection_is_not_retried(node: _Node, rpc: RpcClient) -> None:
    node.mode = "drop"
    with pytest.raises(ChainUnavailable, match="unreachable: RemoteDisconnected"):
        rpc.request("who")
    assert node.requests == 1


def test_timeout_is_not_retried(node: _Node) -> None:
    client = RpcClient(node.url, timeout=0.2)
    try:
        client.request("who")
        with pytest.raises(ChainUnavailable, match="unreachable: TimeoutError"):
            client.request("slow")
    finally:
        client.close()
    assert node.requests == 2


def test_dead_server_gives_chain_unavailable_with_url_and_no_secret() -> None:
    url = _dead_url()
    client = RpcClient(url, timeout=1.0)
    secret = "0x" + "5ec2e7" * 10
    with pytest.raises(ChainUnavailable) as caught:
        client.request("eth_sendRawTransaction", [secret])
    message = str(caught.value)
    assert message == f"chain RPC {url} unreachable: ConnectionRefusedError"
    assert secret not in message and "5ec2e7" not in repr(caught.value)


def test_errors_show_the_node_without_its_credentials() -> None:
    url = _dead_url().replace("http://", "http://user:hunter2@") + "/v3/0123456789abcdef?key=s3cr3t"
    with pytest.raises(ChainUnavailable) as caught:
        RpcClient(url, timeout=1.0).request("eth_chainId")
    message = str(caught.value)
    assert message.startswith("chain RPC http://127.0.0.1:") and message.endswith(
        "/… unreachable: ConnectionRefusedError"
    )
    assert not any(secret in message for secret in ("hunter2", "user", "0123456789abcdef", "s3cr3t"))


def test_server_gone_after_use_gives_chain_unavailable(node: _Node, rpc: RpcClient) -> None:
    rpc.request("bye")  # kept alive by the client, closed by the server
    node.shutdown()  # and nothing listens any more: the one retry is refused
    node.server_close()
    time.sleep(0.05)
    with pytest.raises(ChainUnavailable) as caught:
        rpc.request("who")
    assert str(caught.value) == f"chain RPC {node.url}/ unreachable: ConnectionRefusedError"


def test_non_json_answer_gives_chain_unavailable(node: _Node, rpc: RpcClient) -> None:
    node.mode = "garbage"
    with pytest.raises(ChainUnavailable, match="answered with invalid JSON"):
        rpc.request("who")
    node.mode = "ok"
    assert rpc.request("echo", [1]) == [1]


def test_non_2xx_status_gives_chain_unavailable(node: _Node, rpc: RpcClient) -> None:
    node.mode = "status"
    with pytest.raises(ChainUnavailable, match="unreachable: HTTP status 503"):
        rpc.request("who")
    node.mode = "ok"
    assert rpc.request("echo", [2]) == [2]


def test_unsupported_url_gives_chain_unavailable_on_use() -> None:
    client = RpcClient("ftp://127.0.0.1:1/")
    with pytest.raises(ChainUnavailable) as caught:
        client.request("who")
    assert str(caught.value) == "chain RPC ftp://127.0.0.1:1/ unreachable: InvalidURL"


def test_rpc_error_is_decoded(rpc: RpcClient) -> None:
    with pytest.raises(RpcError) as caught:
        rpc.request("fail")
    assert caught.value.rpc_code == 3
    assert caught.value.revert_data == b"\x12\x34"


def test_concurrent_threads_get_their_own_answers(node: _Node, rpc: RpcClient) -> None:
    threads, calls = 16, 50
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def worker(index: int) -> None:
        try:
            start.wait()
            for call in range(calls):
                assert rpc.request("echo", [index, call]) == [index, call]
            assert rpc.batch([("echo", [index]), ("echo", [index, "b"])]) == [[index], [index, "b"]]
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    assert not errors, errors[:3]
    assert node.requests == threads * (calls + 1)
    assert len(node.ports) <= threads  # at most one connection per concurrent caller, all kept alive
    ports = {rpc.request("who") for _ in range(threads)}
    assert len(ports) == 1


def test_batch_results_come_in_request_order(rpc: RpcClient) -> None:
    calls = [("echo", [i]) for i in range(20)]
    assert rpc.batch(calls) == [[i] for i in range(20)]
    responses = rpc.batch_responses([("echo", ["x"]), ("fail", []), ("echo", ["y"])])
    assert [r["id"] for r in responses] == [0, 1, 2]
    assert responses[1]["error"]["code"] == 3
    with pytest.raises(RpcError, match="fail: execution reverted"):
        rpc.batch([("echo", ["x"]), ("fail", [])])
    assert rpc.batch([]) == []


def test_close_drops_idle_and_in_use_connections(node: _Node, rpc: RpcClient) -> None:
    results: list[Any] = []
    slow = threading.Thread(target=lambda: results.append(rpc.request("slow")))
    slow.start()
    deadline = time.monotonic() + 2
    while node.requests < 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    idle = rpc.request("who")  # a second connection, idle once this returns
    rpc.close()
    node.release.set()
    slow.join()
    in_use = results[0]
    assert in_use != idle
    after = rpc.request("who")  # still usable, on a new connection: neither old one was kept
    assert after not in (idle, in_use)
    assert rpc.request("who") == after
