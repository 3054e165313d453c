"""Sign-in messages must name this server's configured origin, whatever Host or X-Forwarded-*
headers the request carries; forwarded headers count only from configured proxies.

The attacker runs a phishing page on evil.example, has a victim sign an EIP-4361 message for
evil.example there, and posts it to the real ledger with ``Host: evil.example`` (and forged
X-Forwarded-* headers) to get a bearer token in the victim's name.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from eth_account import Account

from ledger_service.settings import ANVIL_DEV_KEYS
from tests.conftest import free_port
from tests.security.conftest import REPO, DevServer, assert_sign_in_refused, sign_in_body

pytestmark = pytest.mark.integration


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


IPV6_LOOPBACK = _ipv6_loopback()

FORGED = {"Host": "evil.example", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    """The embedded default, no origin settings: it must expect its own address."""
    root = tmp_path_factory.mktemp("origin-default")
    dev = DevServer(root / "data", root / "up.log").start()
    yield dev
    dev.stop()


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    """Behind a (local) proxy that is trusted, with localhost as a further allowed origin."""
    root = tmp_path_factory.mktemp("origin-proxied")
    dev = DevServer(root / "data", root / "up.log")
    dev.env.update(  # beside the harness's own (free metrics and custodian ports): never in their place
        {
            "CONSENT_LEDGER_TRUSTED_PROXIES": '["127.0.0.1"]',
            "CONSENT_LEDGER_ALLOWED_ORIGINS": f'["http://localhost:{dev.port}"]',
        }
    )
    yield dev.start()
    dev.stop()


@pytest.mark.parametrize(
    ("uri", "headers"),
    [
        ("http://evil.example/login", {"Host": "evil.example"}),
        ("https://evil.example/login", FORGED),
    ],
    ids=["host-header", "forged-forwarded-headers"],
)
def test_message_signed_on_a_phishing_site_gets_no_token(server: DevServer, uri: str, headers: dict[str, str]) -> None:
    victim = Account.create()
    body = sign_in_body(server, victim, domain="evil.example", uri=uri)
    response = httpx.post(server.url + "/v1/auth/login", json=body, headers=headers, timeout=30)
    assert_sign_in_refused(response, "domain 'evil.example'")


def test_forged_forwarded_proto_does_not_change_the_expected_origin(server: DevServer) -> None:
    """The server is served over http; a client claiming https must not make https messages valid."""
    victim = Account.create()
    host = server.url.split("://", 1)[1]
    body = sign_in_body(server, victim, domain=host, uri=f"https://{host}/portal")
    response = httpx.post(server.url + "/v1/auth/login", json=body, headers={"X-Forwarded-Proto": "https"}, timeout=30)
    assert_sign_in_refused(response, "URI")


def test_message_for_the_served_origin_signs_in_whatever_the_headers(server: DevServer) -> None:
    clinic = Account.from_key(ANVIL_DEV_KEYS[1])
    host = server.url.split("://", 1)[1]
    for headers in ({}, FORGED):
        body = sign_in_body(server, clinic, domain=host, uri=f"{server.url}/portal")
        response = httpx.post(server.url + "/v1/auth/login", json=body, headers=headers, timeout=30)
        assert response.status_code == 200, response.text
        me = httpx.get(server.url + "/v1/me", headers={"Authorization": f"Bearer {response.json()['token']}"})
        assert me.status_code == 200 and me.json()["address"] == clinic.address


def test_on_loopback_the_server_is_also_localhost_and_nothing_else(server: DevServer) -> None:
    """Passkeys need a domain, so the embedded default also answers to localhost (it holds the port on ::1
    too, so no other local program can be localhost:PORT); other names for the same address are refused."""
    user = Account.create()
    body = sign_in_body(server, user, domain=f"localhost:{server.port}", uri=f"http://localhost:{server.port}/")
    assert httpx.post(server.url + "/v1/auth/login", json=body, timeout=30).status_code == 200
    for other in (f"127.0.0.2:{server.port}", f"localhost.evil.example:{server.port}", f"localhost:{server.port + 1}"):
        body = sign_in_body(server, user, domain=other, uri=f"http://{other}/")
        assert_sign_in_refused(httpx.post(server.url + "/v1/auth/login", json=body, timeout=30), f"domain '{other}'")
    if IPV6_LOOPBACK:
        with socket.socket(socket.AF_INET6) as squatter, pytest.raises(OSError, match="in use"):
            squatter.bind(("::1", server.port))  # taken by the server itself


@pytest.mark.skipif(not IPV6_LOOPBACK, reason="this machine has no IPv6 loopback (nor can anything listen there)")
def test_a_server_on_loopback_will_not_start_beside_a_squatter_on_the_ipv6_loopback() -> None:
    from consent_api.server import _listening_sockets
    from ledger_service.errors import ConfigurationError

    port = free_port()
    with socket.socket(socket.AF_INET6) as squatter:
        squatter.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        squatter.bind(("::1", port))
        squatter.listen()
        with pytest.raises(ConfigurationError, match=rf"\[::1\]:{port}"):
            _listening_sockets("127.0.0.1", port)
    sockets = _listening_sockets("127.0.0.1", port)
    assert sockets is not None and [s.getsockname()[0] for s in sockets] == ["127.0.0.1", "::1"]
    for s in sockets:
        s.close()


def _redirect_location(server: DevServer, headers: dict[str, str]) -> str:
    # A missing trailing slash is answered with a redirect built from the request's scheme: it shows
    # which scheme the server believed.
    response = httpx.get(server.url + "/v1/chain/", headers=headers, timeout=30)
    assert response.status_code == 307, response.text
    return response.headers["location"]


def test_forwarded_headers_from_an_unconfigured_peer_are_ignored(server: DevServer) -> None:
    location = _redirect_location(server, {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"})
    assert location.startswith("http://"), location


def test_forwarded_headers_from_a_configured_proxy_are_believed_but_do_not_move_the_origin(proxied: DevServer) -> None:
    assert _redirect_location(proxied, {"X-Forwarded-Proto": "https"}).startswith("https://")
    victim = Account.create()
    body = sign_in_body(proxied, victim, domain="evil.example", uri="https://evil.example/login")
    response = httpx.post(proxied.url + "/v1/auth/login", json=body, headers=FORGED, timeout=30)
    assert_sign_in_refused(response, "domain 'evil.example'")


def test_allowed_origins_sign_in_beside_the_served_one(proxied: DevServer) -> None:
    clinic = Account.from_key(ANVIL_DEV_KEYS[1])
    for origin in (proxied.url, f"http://localhost:{proxied.port}"):
        body = sign_in_body(proxied, clinic, domain=origin.split("://", 1)[1], uri=origin + "/portal")
        response = httpx.post(proxied.url + "/v1/auth/login", json=body, timeout=30)
        assert response.status_code == 200, (origin, response.text)


def _up(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ledger_service.cli", "up", "--data-dir", str(tmp_path / "data"), *args],
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("CONSENT_LEDGER_")},
            "CONSENT_LEDGER_CUSTODIAN_PORTS_FROM": "0",
            **env,
        },
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


EXTERNAL_CHAIN = {
    "CONSENT_LEDGER_DEPLOYER_KEY": ANVIL_DEV_KEYS[0],
    "CONSENT_LEDGER_RELAYER_KEY": ANVIL_DEV_KEYS[0],
}


def test_external_chain_without_a_public_origin_refuses_to_start(tmp_path: Path) -> None:
    # Nothing listens on the RPC port: the refusal must come before any chain work.
    env = {**EXTERNAL_CHAIN, "CONSENT_LEDGER_RPC_URL": f"http://127.0.0.1:{free_port()}"}
    done = _up(tmp_path, env, "--port", str(free_port()))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "CONSENT_LEDGER_PUBLIC_ORIGIN is required with an external rpc_url" in done.stderr, done.stderr


def test_listening_on_every_address_without_a_public_origin_refuses_to_start(tmp_path: Path) -> None:
    done = _up(tmp_path, {}, "--host", "0.0.0.0", "--port", str(free_port()), "--chain-port", str(free_port()))  # noqa: S104
    assert done.returncode == 1, done.stdout + done.stderr
    assert "set CONSENT_LEDGER_PUBLIC_ORIGIN" in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("CONSENT_LEDGER_PUBLIC_ORIGIN", "https://ledger.example.org/portal", "must be an origin"),
        ("CONSENT_LEDGER_TRUSTED_PROXIES", '["nginx"]', "must be IP addresses or networks"),
    ],
)
def test_malformed_origin_settings_refuse_to_start(tmp_path: Path, name: str, value: str, needle: str) -> None:
    env = {
        **EXTERNAL_CHAIN,
        "CONSENT_LEDGER_RPC_URL": f"http://127.0.0.1:{free_port()}",
        "CONSENT_LEDGER_PUBLIC_ORIGIN": "https://ledger.example.org",
        name: value,
    }
    done = _up(tmp_path, env, "--port", str(free_port()))
    assert done.returncode == 1, done.stdout + done.stderr
    assert needle in done.stderr, done.stderr
