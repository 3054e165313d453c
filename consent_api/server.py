"""Serve API + portal with uvicorn on a started runtime (chain up, contracts deployed)."""

from __future__ import annotations

import errno
import logging
import socket
import threading
from collections.abc import Sequence

import uvicorn

from consent_api.app import create_app
from consent_api.body_limits import Limits
from consent_api.custodian_app import create_custodian_app
from consent_api.metrics import Metrics, metrics_app
from ledger_service.bootstrap import (
    Services,
    bootstrap,
    custodian_service,
    embedded_custodian_port,
)
from ledger_service.chain.deploy import Deployment
from ledger_service.errors import ChainError, ConfigurationError
from ledger_service.origins import portal_url, sign_in_origins, trusted_proxies
from ledger_service.runtime import NodeRuntime, Runtime
from ledger_service.settings import Settings

log = logging.getLogger("consent_api")

KEEP_ALIVE_SECONDS = 30


def tcp_socket(host: str) -> socket.socket:
    """A TCP socket for ``host`` (an IPv4 or IPv6 address) to bind and hand to uvicorn. Its protocol is
    named: asyncio sets TCP_NODELAY only on connections whose socket says IPPROTO_TCP, and an accepted
    socket says what its listener said. With ``proto=0`` every answer on a kept-alive connection waited
    ~40 ms for the client's delayed ACK (Nagle: uvicorn writes the head and the body apart).
    docs/operations.md, "Listening sockets"."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return sock


def start_metrics_listener(services: Services, metrics: Metrics) -> tuple[uvicorn.Server, str] | None:
    """Serve GET /metrics on ``metrics_host:metrics_port`` (default 127.0.0.1, port + 1) in a thread.

    The socket is bound here, before the API starts, so a port already taken fails the start
    with the setting to change instead of leaving the service without metrics.
    """
    settings = services.settings
    port = settings.port + 1 if settings.metrics_port is None else settings.metrics_port
    if port == 0:
        return None
    host = settings.metrics_host
    sock = tcp_socket(host)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(
            f"the metrics listener cannot bind {host}:{port} ({exc.strerror}); set CONSENT_LEDGER_METRICS_PORT "
            "to a free port, or to 0 for no metrics listener"
        ) from exc
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    app = metrics_app(metrics, services, token=token or None)
    # A handful of scrapers at most: refuse a crowd (503) rather than queue it.
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", limit_concurrency=8)
    server = uvicorn.Server(config)
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="metrics-listener", daemon=True).start()
    shown = f"[{host}]" if ":" in host else host
    return server, f"http://{shown}:{port}/metrics"


def start_embedded_custodians(services: Services, origins: Sequence[str]) -> list[tuple[uvicorn.Server, str]]:
    """Serve the embedded default's custodians (``up``) each on its own port, for the patient's browser, which
    asks them for the shares of its own records; the node itself calls them in this process."""
    settings = services.settings
    started = []
    for custodian in services.custodians:
        index = custodian.config.index
        port = embedded_custodian_port(settings, index)
        sock = tcp_socket(settings.host)
        try:
            sock.bind((settings.host, port))
        except OSError as exc:
            sock.close()
            raise ConfigurationError(
                f"custodian {index} cannot bind {settings.host}:{port} ({exc.strerror}); set "
                "CONSENT_LEDGER_CUSTODIAN_PORTS_FROM to the first of free ports"
            ) from exc
        host, bound = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        services.custodian_urls_bound[index] = f"http://{shown}:{bound}"
        app = create_custodian_app(
            custodian, limits=Limits.of(settings), cors_origins=[*origins, *settings.cors_origins]
        )
        config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_keep_alive=KEEP_ALIVE_SECONDS)
        server = uvicorn.Server(config)
        threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"custodian-{index}", daemon=True).start()
        started.append((server, services.custodian_urls_bound[index]))
    return started


def _listening_sockets(host: str, port: int) -> list[socket.socket] | None:
    """On 127.0.0.1, the port on ::1 too, so that no other local program can answer for http://localhost:PORT
    (an origin sign-in and passkeys accept: ledger_service/origins.py). None: let uvicorn bind ``host``."""
    if host != "127.0.0.1" or not port or not socket.has_ipv6:
        return None
    sockets: list[socket.socket] = []
    for address in ("127.0.0.1", "::1"):
        sock = tcp_socket(address)
        if sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            sock.bind((address, port))
        except OSError as exc:
            sock.close()
            if sock.family == socket.AF_INET6 and exc.errno == errno.EADDRNOTAVAIL:
                break  # no IPv6 loopback on this machine: nothing can listen there either
            for bound in sockets:
                bound.close()
            raise ConfigurationError(f"cannot listen on [{address}]:{port}: {exc.strerror}") from exc
        sock.listen(2048)
        sockets.append(sock)
    return sockets


def serve(runtime: Runtime | NodeRuntime, stop: threading.Event) -> None:
    """Run until Ctrl+C, SIGTERM or ``stop``; resolves work a crash left half-done first."""
    settings = runtime.settings
    origins, proxies = sign_in_origins(settings), trusted_proxies(settings)  # refuse a bad config before any work
    services = bootstrap(settings, runtime.deployment)
    try:
        # A private SQLite DB has no other writer, so whatever is pending is this process's own
        # from before a crash; on a shared DB another replica may still be uploading.
        shared_db = not services.db.url.startswith("sqlite")
        finished, discarded = services.uploads.recover_pending(
            stale_after=2 * settings.receipt_timeout if shared_db else 0.0
        )
        erasures = services.erasure.finish_interrupted_erasures() if services.erasure is not None else 0
        for custodian in services.custodians:  # embedded custodians apply the chain's erasures before serving
            erasures += custodian.apply_erasures()
        if services.erasures is not None:  # a node of its own: destroy the keys of what the chain erased meanwhile
            erasures += services.erasures.shred_erased()
        disclosed, dropped = services.per_read_disclosures.finish_traced_disclosures(
            stale_after=2 * settings.receipt_timeout if shared_db else 0.0
        )
        if finished or discarded or erasures or disclosed or dropped:
            print(
                f"recovered: {finished} versions anchored, {discarded} discarded, {erasures} erasures completed, "
                f"{disclosed} disclosures finished, {dropped} failed disclosures dropped",
                flush=True,
            )
        if not shared_db:  # a read killed mid-stream left its claim; its retry may finish it (docs/security.md)
            services.reads.reset_interrupted_releases()
        services.idempotency.purge_expired()
        if settings.role != "node":
            services.indexer.catch_up()
        services.start_background()
        # The custodians' ports first: the portal's CSP and GET /v1/chain name them.
        custodian_servers = start_embedded_custodians(services, origins)
        app = create_app(services)
        # X-Forwarded-For/-Proto are believed from the configured proxies only; uvicorn's default
        # trusts them from 127.0.0.1, i.e. from anything else running on this host.
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            access_log=False,
            proxy_headers=bool(proxies),
            forwarded_allow_ips=list(proxies),
            # Longer than clients' own idle limit (httpx: 5 s, as uvicorn's default): the client closes an idle
            # connection first, instead of reusing one this server is closing ("disconnected without a response").
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
        )
        server = uvicorn.Server(config)
        sockets = _listening_sockets(settings.host, settings.port)
        metrics_listener = start_metrics_listener(services, app.state.metrics)

        def watch() -> None:
            stop.wait()
            server.should_exit = True
            if metrics_listener is not None:
                metrics_listener[0].should_exit = True
            for custodian_server, _url in custodian_servers:
                custodian_server.should_exit = True

        threading.Thread(target=watch, name="stop-watch", daemon=True).start()
        print(f"portal  {portal_url(settings)}", flush=True)
        print(f"API     http://{settings.host}:{settings.port}/docs  (OpenAPI at /openapi.json)", flush=True)
        if metrics_listener is not None:
            print(f"metrics {metrics_listener[1]}", flush=True)
        for _custodian_server, url in custodian_servers:
            print(f"custodian {url}/v1/custodian", flush=True)
        print(f"sign-in messages must name {' or '.join(origins)}", flush=True)
        print("press Ctrl+C to stop (state is saved in the data dir)", flush=True)
        server.run(sockets=sockets)
        if metrics_listener is not None:
            metrics_listener[0].should_exit = True
    finally:
        services.close()


def serve_custodian(settings: Settings, deployment: Deployment, stop: threading.Event) -> None:
    """A key custodian until Ctrl+C, SIGTERM or ``stop``. It applies the chain's erasures before it serves
    (a store restored from a backup heals first) and follows them while it runs."""
    custodian = custodian_service(settings, deployment)
    try:
        while not stop.is_set():
            try:
                destroyed = custodian.apply_erasures()
                break
            except ChainError as exc:
                print(f"custodian: waiting for the chain to apply its erasures first ({exc})", flush=True)
                stop.wait(2.0)
        else:
            return
        if destroyed:
            print(f"custodian: destroyed the keys of {destroyed} records erased on chain meanwhile", flush=True)
        threading.Thread(
            target=custodian.follow_erasures,
            args=(stop,),
            kwargs={"on_error": lambda exc: log.warning("custodian: erasures not followed: %s", exc)},
            name="erasure-follower",
            daemon=True,
        ).start()
        app = create_custodian_app(custodian, limits=Limits.of(settings), cors_origins=settings.cors_origins)
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            access_log=False,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
        )
        server = uvicorn.Server(config)

        def watch() -> None:
            stop.wait()
            server.should_exit = True

        threading.Thread(target=watch, name="stop-watch", daemon=True).start()
        info = custodian.info()
        print(
            f"custodian {info['index']} of {info['threshold']}-of-{info['total']}, key {info['publicKey']}, "
            f"ledger {deployment.ledger_address}",
            flush=True,
        )
        print(f"custodian http://{settings.host}:{settings.port}/v1/custodian", flush=True)
        server.run()
    finally:
        custodian.store.close()
