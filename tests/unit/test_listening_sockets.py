"""The sockets the server binds itself turn Nagle's algorithm off on every connection they accept.

asyncio sets TCP_NODELAY only on a connection whose socket names IPPROTO_TCP, and an accepted socket
names what its listener named. A listener made with ``proto=0`` left Nagle on: every answer on a
kept-alive connection then waited ~40 ms for the client's delayed ACK (docs/operations.md,
"Listening sockets"). uvicorn serves given sockets with ``loop.create_server(sock=...)``, as here.
"""

from __future__ import annotations

import asyncio
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest

from consent_api.server import _listening_sockets, tcp_socket
from tests.conftest import free_port


def _nodelay_of_accepted(listener: socket.socket) -> int:
    """TCP_NODELAY on the server side of a connection ``listener`` accepted under asyncio."""

    async def accept_one() -> int:
        loop = asyncio.get_running_loop()
        accepted: asyncio.Future[int] = loop.create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

        server = await loop.create_server(Probe, sock=listener)
        host, port = listener.getsockname()[:2]
        _reader, writer = await asyncio.open_connection(host, port)
        try:
            return await asyncio.wait_for(accepted, 10)
        finally:
            writer.close()
            server.close()

    # A loop of its own in its own thread: earlier tests in the same process (Playwright's sync API) leave
    # one running in the main thread, where asyncio.run refuses to start.
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(asyncio.run, accept_one()).result(timeout=30)


def _bound(sock: socket.socket, host: str) -> socket.socket:
    sock.bind((host, 0))
    sock.listen(8)
    return sock


def test_a_connection_accepted_on_a_tcp_socket_has_nagle_off() -> None:
    assert _nodelay_of_accepted(_bound(tcp_socket("127.0.0.1"), "127.0.0.1"))


def test_a_listener_that_does_not_name_tcp_leaves_nagle_on() -> None:
    # The control: what the server's listeners did before, so the test above can tell them apart.
    plain = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    assert not _nodelay_of_accepted(_bound(plain, "127.0.0.1"))


def test_the_api_listeners_on_loopback_have_nagle_off() -> None:
    sockets = _listening_sockets("127.0.0.1", free_port())
    assert sockets, "on 127.0.0.1 the server binds its own sockets"
    try:
        for sock in sockets:
            assert sock.proto == socket.IPPROTO_TCP
        assert _nodelay_of_accepted(sockets[0])  # the IPv4 one: the address the portal is served on
    finally:
        for sock in sockets:
            sock.close()


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6 here")
def test_a_tcp_socket_on_ipv6_loopback_has_nagle_off() -> None:
    try:
        listener = _bound(tcp_socket("::1"), "::1")
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    assert _nodelay_of_accepted(listener)
