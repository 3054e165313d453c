"""Prometheus text-format metrics for /metrics (no client library needed for this few)."""

from __future__ import annotations

import threading
from collections import defaultdict

from ledger_service.bootstrap import Services


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


def new_metrics() -> Metrics:
    metrics = Metrics()
    metrics.describe("consent_ledger_requests_total", "counter", "HTTP requests by route template and status")
    metrics.describe("consent_ledger_request_seconds_total", "counter", "Time spent serving requests, by route")
    metrics.describe("consent_ledger_disclosures_total", "counter", "Record releases, by kind (consent or emergency)")
    metrics.describe("consent_ledger_problems_total", "counter", "problem+json responses by type")
    return metrics
