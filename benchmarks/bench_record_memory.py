"""Peak memory of uploading and reading back a large record through the whole service.

Starts its own anvil and data dir, uploads a generated record (100 MB by default) as a
provider (encrypt -> content-addressed store -> anchor), reads it back with consent
(consent check -> on-chain disclosure -> verified fetch -> decrypt), and prints the
peak RSS growth over the idle process as a ratio of the record size, next to the
throughput of plain AES-256-GCM + SHA-256 over the same bytes measured in the same run.

    python -m benchmarks.bench_record_memory [--mb 100]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eth_account import Account

CHUNK = 1024 * 1024


def generated(total: int, seed: int = 7) -> Iterator[bytes]:
    """Deterministic incompressible-looking bytes, one chunk at a time."""
    block = hashlib.sha256(str(seed).encode()).digest() * (CHUNK // 32)
    counter = 0
    sent = 0
    while sent < total:
        piece = hashlib.sha256(counter.to_bytes(8, "big")).digest() + block[32:]
        piece = piece[: min(CHUNK, total - sent)]
        counter += 1
        sent += len(piece)
        yield piece


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def baseline_throughput(total: int) -> float:
    """MB/s of AES-256-GCM + SHA-256 over the same bytes (64 KiB segments), in-process."""
    aead = AESGCM(AESGCM.generate_key(bit_length=256))
    digest = hashlib.sha256()
    start = time.perf_counter()
    for index, chunk in enumerate(generated(total)):
        for offset in range(0, len(chunk), 65536):
            segment = chunk[offset : offset + 65536]
            digest.update(aead.encrypt((index * 64 + offset // 65536).to_bytes(12, "big"), segment, None))
    return total / 2**20 / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100)
    args = parser.parse_args()
    total = args.mb * 2**20

    from ledger_service.bootstrap import bootstrap
    from ledger_service.domain.codes import ZERO32, purpose_to_bytes32
    from ledger_service.domain.consent import ConsentGrant, typed_data
    from ledger_service.runtime import Runtime
    from ledger_service.settings import Settings
    from tests.conftest import free_port

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), chain_port=free_port())
        with Runtime(settings) as runtime:
            services = bootstrap(settings, runtime.deployment)
            clinic = runtime.deployment.demo["providers"][0]["address"]
            patient = Account.create()
            now = services.chain_time()
            grant = ConsentGrant(
                patient.address,
                clinic,
                ZERO32,
                purpose_to_bytes32("TREAT"),
                0,
                0,
                services.ledger.fresh_nonce(patient.address),
                now + 600,
            )
            signature = Account.sign_typed_data(patient.key, full_message=typed_data(services.domain, grant)).signature
            services.hub_relay.relay(grant, bytes(signature))
            # Warm every code path on a small record, then measure from that idle level.
            small = services.uploads.create(
                provider=clinic,
                patient=patient.address,
                category="imaging",
                media_type="application/dicom",
                content=generated(1 << 20),
            )
            services.reads.read(accessor=clinic, record_id=small.record_id, purpose="TREAT").read_all()
            idle = rss_mb()
            peak_before = peak_rss_mb()

            start = time.perf_counter()
            created = services.uploads.create(
                provider=clinic,
                patient=patient.address,
                category="imaging",
                media_type="application/dicom",
                content=generated(total),
            )
            upload_s = time.perf_counter() - start
            upload_peak = peak_rss_mb()

            start = time.perf_counter()
            content = services.reads.read(accessor=clinic, record_id=created.record_id, purpose="TREAT")
            check = hashlib.sha256()
            size = 0
            for chunk in content.chunks:
                check.update(chunk)
                size += len(chunk)
            read_s = time.perf_counter() - start
            expected = hashlib.sha256()
            for chunk in generated(total):
                expected.update(chunk)
            assert size == total and check.digest() == expected.digest(), "read-back differs from the upload"
            read_peak = peak_rss_mb()
            services.close()

    base = baseline_throughput(total)
    growth = max(upload_peak, read_peak, peak_before) - idle
    result = {
        "record_mb": args.mb,
        "idle_rss_mb": round(idle, 1),
        "peak_growth_mb": round(growth, 1),
        "peak_growth_over_record_size": round(growth / args.mb, 3),
        "upload_mb_s": round(args.mb / upload_s, 1),
        "read_mb_s": round(args.mb / read_s, 1),
        "baseline_aesgcm_sha256_mb_s": round(base, 1),
        "upload_vs_baseline": round(args.mb / upload_s / base, 3),
        "read_vs_baseline": round(args.mb / read_s / base, 3),
    }
    print(json.dumps(result, indent=2))
    print(
        f"{args.mb} MB record: peak RSS +{growth:.1f} MB over idle "
        f"({growth / args.mb:.2f}x the record); upload {result['upload_mb_s']} MB/s "
        f"({result['upload_vs_baseline']}x baseline), read {result['read_mb_s']} MB/s ({result['read_vs_baseline']}x)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
