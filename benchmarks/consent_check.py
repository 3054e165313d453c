"""Consent checks per second through ledger_service, against raw ``eth_call`` over keep-alive HTTP.

Measured: sequential calls of ``services.ledger.authorizing_consent(patient, clinic, recordId, TREAT)`` (what the
read path asks) and of ``services.ledger.is_authorized(...)``, on one thread: checks/s and p50 latency.

Baseline in the same run, against the same anvil and the same contract: the identical ``eth_call`` (same
calldata, same block tag) sent with ``http.client`` on one keep-alive connection, the JSON reply parsed and the
32-byte word read; no web3.py, no ABI library. Both sides do the same number of calls.

Target: service checks/s ≥ 0.5× raw eth_call/s. The scaling series repeats both at 10× and 100× the calls.

    python -m benchmarks.consent_check [--calls N] [--profile]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

from eth_account import Account

from benchmarks._common import RawRpc, dump, latency_summary, log, stack

DEFAULT_CALLS = 1000
SCALING = (100, 1000, 10000)
TARGET = 0.5


def _timed_loop(calls: int, action: Callable[[], object]) -> tuple[float, list[float]]:
    samples = []
    began = time.perf_counter()
    for _ in range(calls):
        t = time.perf_counter()
        action()
        samples.append(time.perf_counter() - t)
    return time.perf_counter() - began, samples


def prepare(stk: Any) -> tuple[Any, str, str, bytes, bytes]:
    """A patient with an all-records TREAT consent to the clinic and one record: (services, patient, clinic, rid,
    purpose)."""
    from ledger_service.domain.codes import ZERO32, purpose_to_bytes32
    from ledger_service.domain.consent import ConsentGrant, typed_data

    services = stk.services()
    clinic = stk.deployment.demo["providers"][0]["address"]
    patient = Account.create()
    purpose = purpose_to_bytes32("TREAT")
    nonce = services.ledger.fresh_nonce(patient.address)
    grant = ConsentGrant(patient.address, clinic, ZERO32, purpose, 0, 0, nonce, 2**40)
    sig = Account.sign_typed_data(patient.key, full_message=typed_data(services.domain, grant)).signature
    services.hub_relay.relay(grant, bytes(sig))
    record = services.uploads.create(
        provider=clinic,
        patient=patient.address,
        category="laboratory",
        media_type="application/octet-stream",
        content=[os.urandom(256)],
    )
    return services, patient.address, clinic, bytes.fromhex(record.record_id[2:]), purpose


def measure(stk: Any, sizes: tuple[int, ...], *, profile: bool = False) -> dict[str, Any]:
    services, patient, clinic, rid, purpose = prepare(stk)
    ledger = services.ledger
    assert ledger.authorizing_consent(patient, clinic, rid, purpose) is not None
    data = ledger.codec.encode_call("authorizingConsent", patient, clinic, rid, purpose)
    call = {"to": ledger.address, "data": "0x" + data.hex()}
    raw = RawRpc(stk.rpc_url)

    def raw_check() -> bool:
        word = raw.call("eth_call", [call, "latest"])
        return int(word, 16) != 0

    def service_check() -> bool:
        return ledger.authorizing_consent(patient, clinic, rid, purpose) is not None

    def service_is_authorized() -> bool:
        return ledger.is_authorized(patient, clinic, rid, purpose)

    for fn in (raw_check, service_check, service_is_authorized):  # warm connections and caches
        for _ in range(50):
            assert fn()
    series = []
    for n in sizes:
        log(f"consent check: {n} calls each (raw eth_call, authorizing_consent, is_authorized)")
        raw_s, raw_samples = _timed_loop(n, raw_check)
        svc_s, svc_samples = _timed_loop(n, service_check)
        isa_n = min(n, DEFAULT_CALLS)
        isa_s, isa_samples = _timed_loop(isa_n, service_is_authorized)
        series.append(
            {
                "calls": n,
                "raw_eth_call_per_s": round(n / raw_s, 1),
                "raw_seconds": round(raw_s, 4),
                "raw": latency_summary(raw_samples),
                "service_checks_per_s": round(n / svc_s, 1),
                "service_seconds": round(svc_s, 4),
                "service": latency_summary(svc_samples),
                "is_authorized_per_s": round(isa_n / isa_s, 1),
                "is_authorized": latency_summary(isa_samples),
                "ratio": round(raw_s / svc_s, 3),
            }
        )
    profile_text = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
        profiler.start()
        _timed_loop(sizes[-1], service_check)
        profiler.stop()
        profile_text = profiler.output_text(unicode=False, color=False, show_all=False)
    raw.close()
    main_point = next((p for p in series if p["calls"] == DEFAULT_CALLS), series[-1])
    result = {
        "scenario": "consent_check",
        **{k: main_point[k] for k in ("calls", "service_checks_per_s", "raw_eth_call_per_s", "ratio")},
        "service_p50_ms": main_point["service"]["p50_ms"],
        "raw_p50_ms": main_point["raw"]["p50_ms"],
        "target": f">= {TARGET}x raw eth_call/s",
        "met": main_point["ratio"] >= TARGET,
        "series": series,
        "scaling": {
            "work": "consent checks",
            "points": [(p["calls"], p["service_seconds"]) for p in series],
            "baseline_points": [(p["calls"], p["raw_seconds"]) for p in series],
        },
    }
    if profile_text:
        result["profile"] = profile_text
    return result


def run(*, sizes: tuple[int, ...] = SCALING, profile: bool = False) -> dict[str, Any]:
    with stack() as stk:
        return measure(stk, sizes, profile=profile)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, nargs="*", default=list(SCALING))
    parser.add_argument("--profile", action="store_true", help="pyinstrument profile of the service loop")
    args = parser.parse_args()
    result = run(sizes=tuple(args.calls), profile=args.profile)
    profile = result.pop("profile", None)
    dump(result)
    if profile:
        print(profile)


if __name__ == "__main__":
    main()
