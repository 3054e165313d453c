"""Relayed consent grants per second through the HTTP API, against bare signed-transaction submissions.

Measured: ``POST /v1/consents`` with patients' EIP-712 ``ConsentGrant`` signatures (made before the clock starts,
one fresh patient each), sent by many concurrent keep-alive clients to the API server (uvicorn, the real app)
in a child process; a grant counts when its 201 arrives, i.e. the relay has the receipt (the API waits for it).

Baseline in the same run, against the same anvil: a bare script that, for the same number of other patients'
pre-signed grants, ABI-encodes ``grantConsentBySig``, signs the transaction with eth-account and sends it with
``eth_sendRawTransaction`` on one keep-alive connection (nonces pipelined, at most 64 in flight), then waits for
the last receipt and checks that every transaction succeeded.

Target: API grants/s ≥ 0.5× bare submissions/s. Scaling: the same at 10× and 100× the grants.

    python -m benchmarks.grant_relay [--grants N ...] [--clients C]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from eth_abi import encode as abi_encode
from eth_account import Account
from eth_utils import keccak

from benchmarks._common import HttpClient, RawRpc, api_server, dump, latency_summary, log, run_concurrent, stack

SCALING = (16, 160, 1600)
MAIN = 160
CLIENTS = 16
WINDOW = 64  # bare script: transactions in flight at most
TARGET = 0.5
GRANT_SELECTOR = keccak(b"grantConsentBySig((address,address,bytes32,bytes32,uint64,uint64,uint256,uint256),bytes)")[:4]


GRANT_TYPEHASH = keccak(
    b"ConsentGrant(address patient,address grantee,bytes32 scope,bytes32 purpose,uint64 validFrom,"
    b"uint64 validUntil,uint256 nonce,uint256 deadline)"
)


def signed_grants(domain_separator: bytes, grantee: str, count: int, deadline: int) -> list[tuple[Any, bytes]]:
    """``count`` fresh patients' signed all-records TREAT grants to ``grantee`` (nonce 0).

    The EIP-712 digest is built by hand and signed with coincurve: eth-account's ``sign_typed_data`` costs
    ~20 ms a message here, which would eat the time budget on test-data preparation alone. The API checks each
    signature exactly as it checks a wallet's.
    """
    from coincurve import PrivateKey

    from ledger_service.domain.codes import ZERO32, purpose_to_bytes32
    from ledger_service.domain.consent import ConsentGrant

    purpose = purpose_to_bytes32("TREAT")
    out = []
    for _ in range(count):
        patient = Account.create()
        grant = ConsentGrant(patient.address, grantee, ZERO32, purpose, 0, 0, 0, deadline)
        struct_hash = keccak(
            GRANT_TYPEHASH
            + abi_encode(
                ["address", "address", "bytes32", "bytes32", "uint64", "uint64", "uint256", "uint256"],
                [patient.address, grantee, ZERO32, purpose, 0, 0, 0, deadline],
            )
        )
        digest = keccak(b"\x19\x01" + domain_separator + struct_hash)
        rsv = PrivateKey(bytes(patient.key)).sign_recoverable(digest, hasher=None)
        out.append((grant, rsv[:64] + bytes([rsv[64] + 27])))
    return out


def body_of(grant: Any, signature: bytes) -> dict[str, Any]:
    return {
        "grant": {
            "patient": grant.patient,
            "grantee": grant.grantee,
            "scope": "0x" + grant.scope.hex(),
            "purpose": "0x" + grant.purpose.hex(),
            "validFrom": grant.valid_from,
            "validUntil": grant.valid_until,
            "nonce": grant.nonce,
            "deadline": grant.deadline,
        },
        "signature": "0x" + signature.hex(),
    }


def bare_submissions(rpc_url: str, chain_id: int, contract: str, key: str, grants: list[tuple[Any, bytes]]) -> float:
    """Seconds for a bare script to encode, sign and send every grant, and see every receipt succeed."""
    rpc = RawRpc(rpc_url)
    sender = Account.from_key(key)
    nonce = int(rpc.call("eth_getTransactionCount", [sender.address, "pending"]), 16)
    gas_price = int(rpc.call("eth_gasPrice"), 16)
    hashes = []
    began = time.perf_counter()
    for i, (g, sig) in enumerate(grants):
        data = GRANT_SELECTOR + abi_encode(
            ["(address,address,bytes32,bytes32,uint64,uint64,uint256,uint256)", "bytes"],
            [(g.patient, g.grantee, g.scope, g.purpose, g.valid_from, g.valid_until, g.nonce, g.deadline), sig],
        )
        tx = {
            "to": contract,
            "data": data,
            "gas": 150_000,
            "gasPrice": gas_price,
            "nonce": nonce + i,
            "chainId": chain_id,
            "value": 0,
        }
        raw = Account.sign_transaction(tx, sender.key).raw_transaction
        hashes.append(rpc.call("eth_sendRawTransaction", ["0x" + raw.hex()]))
        if len(hashes) % WINDOW == 0:
            # Keep at most WINDOW transactions in flight: anvil's automine slows down quadratically with a deep
            # queue of one sender's pending transactions (measured: 1,600 queued -> ~60/s).
            rpc.wait_receipt(hashes[-WINDOW])
    rpc.wait_receipt(hashes[-1])
    receipts = []
    for start in range(0, len(hashes), 200):
        receipts += rpc.batch([("eth_getTransactionReceipt", [h]) for h in hashes[start : start + 200]])
    elapsed = time.perf_counter() - began
    failed = [r for r in receipts if r is None or int(r["status"], 16) != 1]
    assert not failed, f"{len(failed)} bare grant transactions failed"
    rpc.close()
    return elapsed


def run(*, sizes: tuple[int, ...] = SCALING, clients: int = CLIENTS) -> dict[str, Any]:
    with stack() as stk:
        services = stk.services()
        clinic = stk.deployment.demo["providers"][0]["address"]
        deadline = services.chain_time() + 24 * 3600
        separator = services.ledger.domain_separator()
        log(f"grant relay: signing {2 * sum(sizes)} patients' grants (not timed)")
        api_sets = [signed_grants(separator, clinic, n, deadline) for n in sizes]
        bare_sets = [signed_grants(separator, clinic, n, deadline) for n in sizes]
        series = []
        with api_server(stk) as server:
            http = [HttpClient(server.url) for _ in range(clients)]
            warm = signed_grants(separator, clinic, clients, deadline)
            run_concurrent(clients, warm, lambda i, job: http[i].request("POST", "/v1/consents", body_of(*job)))
            for n, api_grants, bare_grants in zip(sizes, api_sets, bare_sets, strict=True):
                log(f"grant relay: {n} grants through the API ({clients} clients), then {n} bare submissions")
                statuses: list[int] = []

                def post(i: int, job: tuple[Any, bytes], statuses: list[int] = statuses) -> None:
                    status, body, _headers = http[i].request("POST", "/v1/consents", body_of(*job))
                    statuses.append(status)
                    if status != 201:
                        raise RuntimeError(f"{status}: {body[:300]!r}")

                api_s, latencies, errors = run_concurrent(clients, api_grants, post)
                accepted = sum(1 for s in statuses if s == 201)
                bare_s = bare_submissions(
                    stk.rpc_url, stk.deployment.chain_id, stk.deployment.ledger_address, stk.keys[9], bare_grants
                )
                series.append(
                    {
                        "grants": n,
                        "accepted": accepted,
                        "errors": [str(e)[:200] for e in errors[:3]],
                        "api_seconds": round(api_s, 3),
                        "api_grants_per_s": round(accepted / api_s, 1),
                        "api_latency": latency_summary(latencies),
                        "bare_seconds": round(bare_s, 3),
                        "bare_submissions_per_s": round(n / bare_s, 1),
                        "ratio": round((accepted / api_s) / (n / bare_s), 3),
                    }
                )
            for client in http:
                client.close()
    main_point = next((p for p in series if p["grants"] == MAIN), series[-1])
    return {
        "scenario": "grant_relay",
        "clients": clients,
        **{k: main_point[k] for k in ("grants", "api_grants_per_s", "bare_submissions_per_s", "ratio")},
        "api_p50_ms": main_point["api_latency"]["p50_ms"],
        "target": f">= {TARGET}x bare submissions/s",
        "met": main_point["ratio"] >= TARGET and main_point["accepted"] == main_point["grants"],
        "series": series,
        "scaling": {
            "work": "relayed grants",
            "points": [(p["grants"], p["api_seconds"]) for p in series],
            "baseline_points": [(p["grants"], p["bare_seconds"]) for p in series],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grants", type=int, nargs="*", default=list(SCALING))
    parser.add_argument("--clients", type=int, default=CLIENTS)
    args = parser.parse_args()
    dump(run(sizes=tuple(args.grants), clients=args.clients))


if __name__ == "__main__":
    main()
