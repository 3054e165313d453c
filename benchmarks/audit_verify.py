"""The auditor's full verification over a history of 10,000 record versions and 100,000 disclosures.

History (not timed as part of the figure; its generation time is reported): on a private anvil with the
ledger deployed, 6 patients each grant the Demo Clinic an all-records TREAT consent; the clinic anchors
records (``anchorRecord``) whose ciphertext blobs (4 KiB each) are stored in the embedded blob store; the
clinic signs an access request for each disclosure, spread over those records, which the operator's account
relays (``logAccessBySig``), and the operator's delivery log gets one row per disclosure. Transactions are
sent with anvil's automine off, in JSON-RPC batches of 1,000 with explicit nonces, one ``evm_mine`` per batch
(a raised block gas limit packs each batch into one block).

Measured, as ``consent-ledger verify`` runs it: ``fetch_trail`` (every event by batched ``eth_getLogs``, block
headers by batched ``eth_getBlockByNumber``, every event's call of the ledger by batched ``trace_transaction``)
+ ``verify`` (replay of every event, each act's signer recovered from its EIP-712 digest, hash chains, every
blob re-hashed against its CID, the delivery log matched both ways): record versions/s and disclosures/s.

Baseline in the same run: reading and SHA-256-hashing the same blobs' block files + fetching the same logs with
batched ``eth_getLogs`` over ``http.client`` (JSON parsed, not decoded).

Target: verify ≥ 0.3× the baseline's speed. Scaling: the history verified as it grows 10× and 100× (1%, 10%, 100%).
The cost of each step is extrapolated from the previous one; a step estimated over ``STEP_BUDGET_S`` is skipped and
reported (the budget of ``make bench``), and the figure is then the largest history verified.

    python -m benchmarks.audit_verify [--scale 0.01 0.1 1]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from benchmarks._common import RawRpc, dump, log, stack

RECORDS = 10_000
DISCLOSURES = 100_000
SCALES = (0.01, 0.1, 1.0)
# A step whose estimated generation + verification (extrapolated from the previous step) exceeds this is skipped
# and reported, so that `make bench` stays inside its 15 minutes on a loaded machine.
STEP_BUDGET_S = 420.0
BATCH = 1000
BLOB_BYTES = 4096
TARGET = 0.3


class History:
    """Grows the on-chain history (and the matching blobs and delivery rows) to a size, incrementally."""

    def __init__(self, stk: Any) -> None:
        from ledger_service.chain.ledger import ledger_codec
        from ledger_service.domain.codes import category_id, purpose_to_bytes32
        from ledger_service.domain.consent import Eip712Domain

        self.stk = stk
        self.services = stk.services()
        self.rpc = RawRpc(stk.rpc_url, timeout=300)
        self.codec = ledger_codec()
        self.contract = stk.deployment.ledger_address
        self.clinic = stk.deployment.demo["providers"][0]["address"]
        clinic = stk.account(1)
        if clinic.address != self.clinic:
            raise RuntimeError(f"the demo clinic is {self.clinic}, not anvil account #1 {clinic.address}")
        self.clinic_key = bytes(clinic.key)
        self.relayer = stk.account(0).address  # relays the clinic's signed requests, as the hub would
        self.patients = list(stk.deployment.demo["patients"])
        self.treat = purpose_to_bytes32("TREAT")
        self.domain = Eip712Domain(stk.deployment.chain_id, self.contract)
        self.category = category_id("laboratory")
        self.records: list[tuple[str, bytes]] = []  # (patient, record id)
        self.cids: list[Any] = []
        self.disclosures = 0
        self.generation_s = 0.0
        self.rpc.call("evm_setBlockGasLimit", [hex(2_000_000_000)])
        self._send(
            [
                (p, self.codec.encode_call("grantConsent", p, self.clinic, b"\x00" * 32, self.treat, 0, 0))
                for p in self.patients
            ]
        )
        self.consent = {
            p: self.services.ledger.codec.decode_result(
                "consentIdOf",
                bytes.fromhex(
                    self.rpc.call(
                        "eth_call",
                        [
                            {
                                "to": self.contract,
                                "data": "0x"
                                + self.codec.encode_call("consentIdOf", p, self.clinic, b"\x00" * 32, self.treat).hex(),
                            },
                            "latest",
                        ],
                    )[2:]
                ),
            )[0]
            for p in self.patients
        }

    def _send(self, txs: list[tuple[str, bytes]]) -> list[tuple[str, int, int]]:
        """Send (sender, calldata) pairs in mined batches; returns (tx hash, block, index in block) of each."""
        out: list[tuple[str, int, int]] = []
        self.rpc.call("anvil_setAutomine", [False])
        nonces: dict[str, int] = {}
        for start in range(0, len(txs), BATCH):
            group = txs[start : start + BATCH]
            calls = []
            for sender, data in group:
                if sender not in nonces:
                    nonces[sender] = int(self.rpc.call("eth_getTransactionCount", [sender, "pending"]), 16)
                tx = {"from": sender, "to": self.contract, "data": "0x" + data.hex(), "gas": hex(300_000)}
                tx["nonce"] = hex(nonces[sender])
                nonces[sender] += 1
                calls.append(("eth_sendTransaction", [tx]))
            hashes = self.rpc.batch(calls)
            self.rpc.call("evm_mine", [])
            block = self.rpc.call("eth_getBlockByNumber", ["latest", False])
            number = int(block["number"], 16)
            order = {h: i for i, h in enumerate(block["transactions"])}
            if len(order) != len(hashes):
                raise RuntimeError(f"batch of {len(hashes)} transactions spread over blocks ({len(order)} in one)")
            out += [(h, number, order[h]) for h in hashes]
        self.rpc.call("anvil_setAutomine", [True])
        return out

    def grow(self, records: int, disclosures: int) -> None:
        from coincurve import PrivateKey

        from ledger_service.chain.ledger import struct_tuple
        from ledger_service.codec import eip712
        from ledger_service.db.models import DeliveryRow
        from ledger_service.domain.codes import hex32
        from ledger_service.domain.consent import AccessRequest
        from ledger_service.domain.records import record_id_of

        began = time.perf_counter()
        new_records = []
        indexes = range(len(self.records), records)
        blobs = [os.urandom(BLOB_BYTES) for _ in indexes]
        # Each put fsyncs its block, directory and pin: bound by the disk's sync latency, so run them side by side.
        with ThreadPoolExecutor(max_workers=16) as pool:
            cids = list(pool.map(lambda blob: self.services.blobs.put([blob]).cid, blobs))
        first = len(self.records)
        for i, blob, cid in zip(indexes, blobs, cids, strict=True):
            patient = self.patients[i % len(self.patients)]
            salt = i.to_bytes(32, "big")
            self.cids.append(cid)
            data = self.codec.encode_call(
                "anchorRecord", patient, self.category, salt, cid.bytes, hashlib.sha256(blob).digest()
            )
            new_records.append((self.clinic, data))
            self.records.append((patient, record_id_of(patient, self.clinic, salt)))
        anchors = self._send(new_records)
        self._write_operator_versions(first, blobs, cids, anchors)
        txs, digests = [], []
        wanted = list(range(self.disclosures, disclosures))
        signer = PrivateKey(self.clinic_key)
        for n in wanted:
            patient, rid = self.records[(n * 7919) % len(self.records)]
            request = AccessRequest(patient, self.clinic, rid, 1, self.treat, n, 2**40)  # nonce n, no deadline soon
            digest = eip712.digest(self.domain, request)
            raw = signer.sign_recoverable(digest, hasher=None)
            signature = raw[:64] + bytes((27 + raw[64],))
            txs.append((self.relayer, self.codec.encode_call("logAccessBySig", struct_tuple(request), signature)))
            digests.append(digest)
        sent = self._send(txs)
        rows = []
        now = datetime.now(UTC)
        for n, digest, (tx_hash, block, index) in zip(wanted, digests, sent, strict=True):
            patient, rid = self.records[(n * 7919) % len(self.records)]
            rows.append(
                {
                    "record_id": hex32(rid),
                    "version": 1,
                    "patient": patient,
                    "accessor": self.clinic,
                    "purpose": "TREAT",
                    "consent_id": hex32(self.consent[patient]),
                    "emergency": False,
                    "reason": None,
                    "status": "logged",
                    "tx_hash": tx_hash,
                    "block_number": block,
                    "log_index": index,
                    "leaf_index": None,
                    "request_digest": hex32(digest),
                    "idempotency_key": None,
                    "created_at": now,
                }
            )
        with self.services.db.session() as s:
            for start in range(0, len(rows), 5000):
                s.execute(DeliveryRow.__table__.insert(), rows[start : start + 5000])
        self.disclosures = disclosures
        self.generation_s += time.perf_counter() - began

    def _write_operator_versions(
        self, first: int, blobs: list[bytes], cids: list[Any], anchors: list[tuple[str, int, int]]
    ) -> None:
        """The operator's records/record_versions rows for records anchored straight on chain, as the
        service would have written them (the verifier matches them against the anchors)."""
        from ledger_service.db.models import RecordRow, RecordVersionRow
        from ledger_service.domain.codes import ZERO32, hex32
        from ledger_service.domain.records import version_hash

        now = datetime.now(UTC)
        records, versions = [], []
        for offset, (blob, cid, (tx_hash, block, _index)) in enumerate(zip(blobs, cids, anchors, strict=True)):
            patient, rid = self.records[first + offset]
            commitment = hashlib.sha256(blob).digest()
            anchored_hash = version_hash(
                record_id=rid,
                version=1,
                patient=patient,
                author=self.clinic,
                category=self.category,
                cid=cid.bytes,
                commitment=commitment,
                previous_hash=ZERO32,
            )
            records.append(
                {
                    "record_id": hex32(rid),
                    "patient": patient,
                    "author": self.clinic,
                    "category": "laboratory",
                    "salt": hex32((first + offset).to_bytes(32, "big")),
                    "current_version": 1,
                    "state": "anchored",
                    "created_at": now,
                }
            )
            versions.append(
                {
                    "record_id": hex32(rid),
                    "version": 1,
                    "cid": str(cid),
                    "media_type": "application/octet-stream",
                    "plaintext_size": len(blob),
                    "ciphertext_size": len(blob),
                    "commitment": hex32(commitment),
                    "version_hash": hex32(anchored_hash),
                    "previous_hash": hex32(ZERO32),
                    "author": self.clinic,
                    "state": "anchored",
                    "tx_hash": tx_hash,
                    "block_number": block,
                    "created_at": now,
                }
            )
        with self.services.db.session() as s:
            for start in range(0, len(records), 5000):
                s.execute(RecordRow.__table__.insert(), records[start : start + 5000])
                s.execute(RecordVersionRow.__table__.insert(), versions[start : start + 5000])

    def verify(self) -> tuple[float, Any, dict[str, float]]:
        from ledger_service.audit.fetch import fetch_trail
        from ledger_service.audit.gcpause import paused_gc
        from ledger_service.audit.sources import operator_log, operator_records
        from ledger_service.audit.verifier import verify
        from ledger_service.chain.rpc import RpcClient

        phases: dict[str, float] = {}
        began = time.perf_counter()
        rpc = RpcClient(self.stk.rpc_url, timeout=300)
        with paused_gc():  # as `consent-ledger verify` pauses it around the same work
            trail = fetch_trail(rpc, self.contract, from_block=self.stk.deployment.block_number)
            phases["fetch_trail_s"] = time.perf_counter() - began
            t = time.perf_counter()
            operator = operator_records(self.services.db)
            report = verify(trail, self.services.blobs, operator=operator, log=operator_log(self.services.db))
            phases["verify_s"] = time.perf_counter() - t
        return time.perf_counter() - began, report, phases

    def baseline(self) -> tuple[float, dict[str, float]]:
        from ledger_service.audit.fetch import LOG_RANGE, RPC_BATCH

        began = time.perf_counter()
        for cid in self.cids:
            with open(self.services.blobs.block_path(cid), "rb") as handle:
                hashlib.sha256(handle.read()).digest()
        hashed = time.perf_counter() - began
        t = time.perf_counter()
        first = self.stk.deployment.block_number
        head = int(self.rpc.call("eth_blockNumber"), 16)
        ranges = [(lo, min(lo + LOG_RANGE - 1, head)) for lo in range(first, head + 1, LOG_RANGE)]
        count = 0
        for start in range(0, len(ranges), RPC_BATCH):
            calls = [
                ("eth_getLogs", [{"address": self.contract, "fromBlock": hex(lo), "toBlock": hex(hi)}])
                for lo, hi in ranges[start : start + RPC_BATCH]
            ]
            for result in self.rpc.batch(calls):
                count += len(result)
        fetched = time.perf_counter() - t
        return time.perf_counter() - began, {"hash_blobs_s": hashed, "fetch_logs_s": fetched, "logs": count}


def run(*, scales: tuple[float, ...] = SCALES, profile: bool = False) -> dict[str, Any]:
    series: list[dict[str, Any]] = []
    skipped = []
    profile_text = None
    with stack() as stk:
        history = History(stk)
        for scale in scales:
            records, disclosures = int(RECORDS * scale), int(DISCLOSURES * scale)
            if series:
                last = series[-1]
                growth = disclosures / max(last["disclosures"], 1)
                step_gen = last["generation_seconds_cumulative"] - (
                    series[-2]["generation_seconds_cumulative"] if len(series) > 1 else 0
                )
                estimate = (step_gen + last["verify_seconds"]) * growth
                if estimate > STEP_BUDGET_S:
                    log(
                        f"audit verify: skipping {disclosures} disclosures "
                        f"(estimated {estimate:.0f} s > {STEP_BUDGET_S:.0f} s)"
                    )
                    skipped.append(
                        {"records": records, "disclosures": disclosures, "estimated_seconds": round(estimate)}
                    )
                    continue
            log(f"audit verify: growing the history to {records} records, {disclosures} disclosures")
            history.grow(records, disclosures)
            log(f"audit verify: verifying (history generated in {history.generation_s:.1f} s so far)")
            if profile and scale == scales[-1]:
                from pyinstrument import Profiler

                profiler = Profiler(interval=0.005)
                profiler.start()
            verify_s, report, phases = history.verify()
            if profile and scale == scales[-1]:
                profiler.stop()
                profile_text = profiler.output_text(unicode=False, color=False)
            base_s, base_phases = history.baseline()
            versions = report.counts.get("versions", 0)
            series.append(
                {
                    "records": records,
                    "disclosures": disclosures,
                    "events": report.counts.get("events"),
                    "violations": len(report.violations),
                    "violation_codes": report.violations_by_code(),
                    "verify_seconds": round(verify_s, 3),
                    "phases": {k: round(v, 3) for k, v in phases.items()},
                    "versions_per_s": round(versions / verify_s, 1),
                    "disclosures_per_s": round(disclosures / verify_s, 1),
                    "baseline_seconds": round(base_s, 3),
                    "baseline_phases": {k: round(v, 3) for k, v in base_phases.items()},
                    "ratio": round(base_s / verify_s, 3),
                    "generation_seconds_cumulative": round(history.generation_s, 1),
                }
            )
    main_point = series[-1]
    result = {
        "scenario": "audit_verify",
        **{
            k: main_point[k]
            for k in ("records", "disclosures", "versions_per_s", "disclosures_per_s", "ratio", "violations")
        },
        "target": f">= {TARGET}x (hash blobs + fetch logs, batched JSON-RPC)",
        "met": main_point["ratio"] >= TARGET and main_point["violations"] == 0,
        "series": series,
        "skipped": skipped,
        "scaling": {
            "work": "history (disclosures)",
            "points": [(p["disclosures"], p["verify_seconds"]) for p in series],
            "baseline_points": [(p["disclosures"], p["baseline_seconds"]) for p in series],
        },
    }
    if profile_text:
        result["profile"] = profile_text
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, nargs="*", default=list(SCALES))
    parser.add_argument("--profile", action="store_true", help="pyinstrument profile of the largest verification")
    args = parser.parse_args()
    result = run(scales=tuple(args.scale), profile=args.profile)
    profile = result.pop("profile", None)
    dump(result)
    if profile:
        print(profile)


if __name__ == "__main__":
    main()
