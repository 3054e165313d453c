"""Record reads through the HTTP API at concurrency 1, 8 and 32, in per-read and batched disclosure modes.

Measured: ``GET /v1/records/{id}?purpose=TREAT`` by the Demo Clinic (bearer token) against the API server
(uvicorn, the real app) in a child process, on 1 KiB records the patient consented to: reads/s, p50 and p99.
Per-read mode: the clinic's signed access request, simulated (eth_call) -> ``logAccessBySig`` transaction,
waited for -> delivery row -> blob -> decrypt. Batched mode (``CONSENT_LEDGER_DISCLOSURE_MODE=batched``):
consent check pinned to a block -> a disclosure-log entry in the DB -> blob -> decrypt; roots are anchored in
the background.

Baselines in the same run: ``GET /bench/trivial`` (a sync endpoint returning a constant, added to the same app
on the same server) at the same concurrency, and the time of one ``logAccessBySig`` transaction sent by a bare
script (EIP-712 signature, transaction signature, ``eth_sendRawTransaction``, receipt) against the same anvil.

Key custody: the records' data keys are split 2-of-3 among three custodians, each ``consent-ledger serve
custodian`` in its own child process; a read asks them for the shares against its disclosure. A third baseline:
the time of ``threshold`` trivial custodian requests (``GET /v1/custodian``) sent in parallel.

Target: read p50 ≤ 3× (trivial p50 + one logAccessBySig + t parallel custodian round trips) at each concurrency.

    python -m benchmarks.read_path [--modes per-read batched]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from eth_account import Account

from benchmarks._common import (
    HttpClient,
    RawRpc,
    api_server,
    custodian_servers,
    dump,
    latency_summary,
    log,
    run_concurrent,
    stack,
)

CONCURRENCY = (1, 8, 32)
READS = {1: 40, 8: 160, 32: 320}
TRIVIAL = {1: 300, 8: 600, 32: 900}
RECORDS = 8
TARGET = 3.0


def prepare(stk: Any, custodians: list[str]) -> tuple[Any, str, list[str], str, str]:
    """(services, clinic, record ids, patient, bearer token) with an all-records consent in place; the records'
    key shares are with ``custodians``."""
    from ledger_service.domain.codes import ZERO32, purpose_to_bytes32
    from ledger_service.domain.consent import ConsentGrant, typed_data

    services = stk.services(custodian_urls=custodians)
    clinic = stk.deployment.demo["providers"][0]["address"]
    patient = Account.create()
    grant = ConsentGrant(
        patient.address, clinic, ZERO32, purpose_to_bytes32("TREAT"), 0, 0, 0, services.chain_time() + 3600
    )
    sig = Account.sign_typed_data(patient.key, full_message=typed_data(services.domain, grant)).signature
    services.hub_relay.relay(grant, bytes(sig))
    records = [
        services.uploads.create(
            provider=clinic,
            patient=patient.address,
            category="laboratory",
            media_type="application/octet-stream",
            content=[os.urandom(1024)],
        ).record_id
        for _ in range(RECORDS)
    ]
    token, _session = services.auth.issue_token(clinic)
    return services, clinic, records, patient.address, token


def log_access_seconds(stk: Any, domain: Any, patient: str, clinic: str, record_id: str, samples: int = 15) -> float:
    """Median wall time of one ``logAccessBySig`` by a bare script: the clinic's EIP-712 signature, encode,
    sign the transaction, send, receipt."""
    import secrets

    from eth_abi import encode as abi_encode
    from eth_utils import keccak

    from ledger_service.domain.codes import purpose_to_bytes32
    from ledger_service.domain.consent import AccessRequest, typed_data

    rpc = RawRpc(stk.rpc_url)
    relayer = stk.account(0)
    clinic_key = stk.account(1)
    assert clinic_key.address == clinic
    selector = keccak(b"logAccessBySig((address,address,bytes32,uint32,bytes32,uint256,uint256),bytes)")[:4]
    gas_price = int(rpc.call("eth_gasPrice"), 16)
    record = bytes.fromhex(record_id[2:])
    times = []
    for _ in range(samples):
        began = time.perf_counter()
        request = AccessRequest(patient, clinic, record, 1, purpose_to_bytes32("TREAT"), secrets.randbits(128), 2**40)
        signature = Account.sign_typed_data(clinic_key.key, full_message=typed_data(domain, request)).signature
        nonce = int(rpc.call("eth_getTransactionCount", [relayer.address, "pending"]), 16)
        data = selector + abi_encode(
            ["(address,address,bytes32,uint32,bytes32,uint256,uint256)", "bytes"],
            [(patient, clinic, record, 1, request.purpose, request.nonce, request.deadline), bytes(signature)],
        )
        tx = {
            "to": stk.deployment.ledger_address,
            "data": data,
            "gas": 200_000,
            "gasPrice": gas_price,
            "nonce": nonce,
            "chainId": stk.deployment.chain_id,
            "value": 0,
        }
        raw = Account.sign_transaction(tx, relayer.key).raw_transaction
        tx_hash = rpc.call("eth_sendRawTransaction", ["0x" + raw.hex()])
        receipt = rpc.wait_receipt(tx_hash)
        if int(receipt["status"], 16) != 1:
            raise RuntimeError(f"the baseline logAccessBySig reverted: {tx_hash}")
        times.append(time.perf_counter() - began)
    rpc.close()
    return statistics.median(times)


def custodian_round_trip_seconds(urls: list[str], threshold: int, samples: int = 30) -> float:
    """Median wall time of ``threshold`` trivial custodian requests (``GET /v1/custodian``) sent in parallel."""
    clients = [HttpClient(url) for url in urls[:threshold]]
    times = []
    with ThreadPoolExecutor(max_workers=threshold) as pool:
        for _ in range(samples):
            began = time.perf_counter()
            for status, _body, _headers in pool.map(lambda c: c.request("GET", "/v1/custodian"), clients):
                assert status == 200
            times.append(time.perf_counter() - began)
    for client in clients:
        client.close()
    return statistics.median(times)


def measure_mode(mode: str) -> dict[str, Any]:
    with stack(disclosure_mode=mode) as stk, custodian_servers(stk) as custodians:
        services, clinic, records, patient, token = prepare(stk, custodians)
        log_access_s = log_access_seconds(stk, services.domain, patient, clinic, records[0])
        threshold = services.settings.custody_threshold
        custody_s = custodian_round_trip_seconds(custodians, threshold)
        levels = []
        with api_server(stk, workers_env={"CONSENT_LEDGER_CUSTODIAN_URLS": json.dumps(custodians)}) as server:
            clients = [HttpClient(server.url, {"Authorization": f"Bearer {token}"}) for _ in range(max(CONCURRENCY))]
            for client in clients[:4]:  # warm the app, the pools and the caches
                for rid in records[:2]:
                    status, body, _ = client.request("GET", f"/v1/records/{rid}?purpose=TREAT")
                    assert status == 200, body[:300]
            for c in CONCURRENCY:
                log(f"read path ({mode}): {TRIVIAL[c]} trivial requests and {READS[c]} reads at concurrency {c}")

                def trivial(i: int, _job: int) -> None:
                    status, _body, _ = clients[i].request("GET", "/bench/trivial")
                    assert status == 200

                def read(i: int, job: int) -> None:
                    status, body, _headers = clients[i].request(
                        "GET", f"/v1/records/{records[job % len(records)]}?purpose=TREAT"
                    )
                    if status != 200 or len(body) != 1024:
                        raise RuntimeError(f"{status}: {body[:200]!r}")

                t_s, t_lat, t_err = run_concurrent(c, list(range(TRIVIAL[c])), trivial)
                r_s, r_lat, r_err = run_concurrent(c, list(range(READS[c])), read)
                t_sum, r_sum = latency_summary(t_lat), latency_summary(r_lat)
                bound_ms = t_sum["p50_ms"] + (log_access_s + custody_s) * 1000
                levels.append(
                    {
                        "concurrency": c,
                        "reads": READS[c],
                        "read_errors": [str(e)[:200] for e in r_err[:3]],
                        "reads_per_s": round(len(r_lat) / r_s, 1),
                        "read": r_sum,
                        "trivial_per_s": round(len(t_lat) / t_s, 1),
                        "trivial": t_sum,
                        "trivial_errors": len(t_err),
                        "bound_ms": round(bound_ms, 3),
                        "ratio": round(r_sum["p50_ms"] / bound_ms, 3),
                        "met": r_sum["p50_ms"] <= TARGET * bound_ms and not r_err,
                    }
                )
            for client in clients:
                client.close()
        anchored = None
        if mode == "batched":
            anchored = {"log_size": services.disclosure_log.size(), "anchored": services.disclosure_log.anchored_size()}
    return {
        "mode": mode,
        "log_access_ms": round(log_access_s * 1000, 3),
        "custodian_round_trips_ms": round(custody_s * 1000, 3),
        "custody_threshold": threshold,
        "levels": levels,
        "disclosure_log": anchored,
    }


def run(*, modes: tuple[str, ...] = ("per-read", "batched")) -> dict[str, Any]:
    results = {}
    for mode in modes:
        try:
            results[mode] = measure_mode(mode)
        except Exception as exc:  # a mode that cannot run is reported, not fatal
            log(f"read path ({mode}) could not be measured: {type(exc).__name__}: {exc}")
            results[mode] = {"mode": mode, "error": f"{type(exc).__name__}: {exc}"[:500]}
    met = all(level["met"] for r in results.values() for level in r.get("levels", [])) and all(
        "error" not in r for r in results.values()
    )
    return {
        "scenario": "read_path",
        "target": f"read p50 <= {TARGET}x (trivial p50 + one logAccessBySig + t parallel custodian round trips)",
        "met": met,
        "modes": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", nargs="*", default=["per-read", "batched"])
    args = parser.parse_args()
    dump(run(modes=tuple(args.modes)))


if __name__ == "__main__":
    main()
