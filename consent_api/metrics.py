"""Prometheus text-format metrics (no client library needed for this few), on a listener of their own.

Every label comes from a closed set (known methods, the app's route templates, status classes), so
no request, however odd its method or path, adds a series. The public API does not serve them:
``metrics_app`` does, on ``metrics_host:metrics_port`` (docs/operations.md, "Monitoring").
"""

from __future__ import annotations

import hmac
import threading
from collections import defaultdict

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from consent_api import problems
from ledger_service.bootstrap import Services

KNOWN_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})


def request_labels(method: str, route: object, status: int) -> dict[str, str]:
    """The labels of one request: its method or "other", its route template or "unmatched", "2xx"..."""
    template = getattr(route, "path", None)
    return {
        "method": method if method in KNOWN_METHODS else "other",
        "route": template if isinstance(template, str) else "unmatched",
        "status": f"{status // 100}xx" if 100 <= status <= 599 else "other",
    }


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"' for k, v in labels)
    return "{" + inner + "}"


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
        self._help: dict[str, tuple[str, str]] = {}

    def describe(self, name: str, kind: str, text: str) -> None:
        self._help[name] = (kind, text)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._counters[name]
            series[key] = series.get(key, 0.0) + amount

    def render(self, services: Services) -> str:
        lines: list[str] = []
        with self._lock:
            snapshot = {name: dict(series) for name, series in self._counters.items()}
        for name in sorted(set(snapshot) | set(self._help)):
            kind, text = self._help.get(name, ("counter", name))
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
            for labels, value in sorted(snapshot.get(name, {}).items()):
                lines.append(f"{name}{_labels(labels)} {value:g}")
        head = services.rpc.block_number()
        cursor, _ = services.indexer.cursor()
        gauges = {
            "consent_ledger_chain_block_number": (head, "Latest block number the node reports"),
            "consent_ledger_indexer_block_number": (cursor, "Last block whose events are indexed"),
            "consent_ledger_indexer_lag_blocks": (max(0, head - cursor), "Blocks the event index is behind the head"),
        }
        for name, (value, text) in gauges.items():
            lines += [f"# HELP {name} {text}", f"# TYPE {name} gauge", f"{name} {value}"]
        return "\n".join(lines) + "\n"


def metrics_app(metrics: Metrics, services: Services, *, token: str | None = None) -> Starlette:
    """GET /metrics alone; with ``token`` set, only for ``Authorization: Bearer <token>``."""
    expected = f"Bearer {token}".encode() if token else None

    def scrape(request: Request) -> Response:
        if expected is not None:
            given = request.headers.get("authorization", "").encode("latin-1", "replace")
            if not hmac.compare_digest(given, expected):  # constant time: the token is a secret
                refused = problems.problem(401, "unauthorized", "send Authorization: Bearer <metrics token>")
                refused.headers["WWW-Authenticate"] = "Bearer"
                return refused
        return Response(metrics.render(services), media_type="text/plain; version=0.0.4")

    return Starlette(routes=[Route("/metrics", scrape, methods=["GET"])])


def new_metrics() -> Metrics:
    metrics = Metrics()
    metrics.describe("consent_ledger_requests_total", "counter", "HTTP requests by route template and status")
    metrics.describe("consent_ledger_request_seconds_total", "counter", "Time spent serving requests, by route")
    metrics.describe("consent_ledger_disclosures_total", "counter", "Record releases, by kind (consent or emergency)")
    metrics.describe("consent_ledger_problems_total", "counter", "problem+json responses by type")
    return metrics
