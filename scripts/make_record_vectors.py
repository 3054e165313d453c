"""Write tests/vectors/record_ciphertext.json: small record ciphertexts made by the service's own envelope.

    python scripts/make_record_vectors.py [--out tests/vectors/record_ciphertext.json]

Each vector is ``ledger_service.crypto.encrypt_bytes`` of a fixed plaintext under a fixed data key and record
binding (docs/architecture.md, "Key custody"; the format in ledger_service/crypto/envelope.py). The data keys
and bindings are derived from fixed labels; the nonce prefix is drawn by the envelope at random, so the
ciphertexts are stored as produced once: the tests check that they decrypt to the stated plaintext (in Python
and in the portal's record_decrypt.js), not that a re-run reproduces them.

``tampered`` lists altered copies of the first multi-segment vector that must not decrypt, each checked here
against ``decrypt_bytes`` before it is written. Every byte string in the JSON is 0x-prefixed lowercase hex.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

from ledger_service.crypto.envelope import (
    STREAM_HEADER_SIZE,
    TAG_SIZE,
    DataKey,
    RecordBinding,
    decrypt_bytes,
    encrypt_bytes,
)
from ledger_service.errors import DecryptionError

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "tests" / "vectors" / "record_ciphertext.json"

OBSERVATION = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0", "display": "Glucose"}]},
    "valueQuantity": {"value": 95, "unit": "mg/dL"},
}


def derived(label: str, size: int = 32) -> bytes:
    """Fixed bytes for ``label`` (SHA-256 in counter mode): vectors, never real keys."""
    out = b""
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"consent-ledger/test-vectors/record/{label}/{counter}".encode()).digest()
        counter += 1
    return out[:size]


def hex0x(data: bytes) -> str:
    return "0x" + data.hex()


def binding_of(name: str, version: int) -> RecordBinding:
    # A checksummed-looking mixed-case address on purpose: the binding lowercases it.
    patient = "0x" + derived(f"{name}/patient", 20).hex().upper()
    return RecordBinding(record_id=derived(f"{name}/record-id"), version=version, patient=patient)


def vector(name: str, plaintext: bytes, *, version: int, segment_size: int, media_type: str) -> dict[str, Any]:
    key = derived(f"{name}/data-key")
    binding = binding_of(name, version)
    ciphertext = encrypt_bytes(DataKey(key), binding, plaintext, segment_size=segment_size)
    assert decrypt_bytes(DataKey(key), binding, ciphertext) == plaintext
    return {
        "name": name,
        "dataKey": hex0x(key),
        "binding": {"recordId": hex0x(binding.record_id), "version": binding.version, "patient": binding.patient},
        "patientAsGiven": "0x" + binding.patient[2:].upper(),
        "segmentSize": segment_size,
        "mediaType": media_type,
        "plaintext": hex0x(plaintext),
        "ciphertext": hex0x(ciphertext),
    }


def tampered(base: dict[str, Any]) -> list[dict[str, Any]]:
    """Altered copies of ``base``'s ciphertext (several segments of 16 bytes), each refused by decrypt_bytes."""
    ct = bytes.fromhex(base["ciphertext"][2:])
    seg = base["segmentSize"] + TAG_SIZE
    body = ct[STREAM_HEADER_SIZE:]
    assert len(body) > 2 * seg, "the base vector needs at least three segments"

    def flip(data: bytes, at: int) -> bytes:
        out = bytearray(data)
        out[at] ^= 0x01
        return bytes(out)

    header = ct[:STREAM_HEADER_SIZE]
    cases = [
        ("magic altered", flip(ct, 0)),
        ("segment size altered", flip(ct, 9)),
        ("nonce prefix altered", flip(ct, STREAM_HEADER_SIZE - 1)),
        ("first segment's ciphertext altered", flip(ct, STREAM_HEADER_SIZE)),
        ("last segment's tag altered", flip(ct, len(ct) - 1)),
        ("truncated at a segment boundary", header + body[: 2 * seg]),
        ("truncated inside the last tag", ct[:-1]),
        ("a byte appended", ct + b"\x00"),
        ("a full segment appended", ct + body[:seg]),
        ("two segments swapped", header + body[seg : 2 * seg] + body[:seg] + body[2 * seg :]),
        ("header only", header),
        ("empty", b""),
    ]
    key = DataKey(bytes.fromhex(base["dataKey"][2:]))
    binding = RecordBinding(
        record_id=bytes.fromhex(base["binding"]["recordId"][2:]),
        version=base["binding"]["version"],
        patient=base["binding"]["patient"],
    )
    out = []
    for why, data in cases:
        try:
            decrypt_bytes(key, binding, data)
        except DecryptionError:
            out.append({"name": why, "ciphertext": hex0x(data)})
        else:
            raise AssertionError(f"{why}: decrypt_bytes accepted it")
    return out


def build() -> dict[str, Any]:
    fhir = json.dumps(OBSERVATION, indent=2).encode()
    vectors = [
        vector("fhir-one-segment", fhir, version=1, segment_size=64 * 1024, media_type="application/fhir+json"),
        vector("fhir-16-byte-segments", fhir, version=3, segment_size=16, media_type="application/fhir+json"),
        vector("exact-segment-boundary", b"0123456789abcdef" * 2, version=2, segment_size=16, media_type="text/plain"),
        vector("empty", b"", version=1, segment_size=64 * 1024, media_type="application/octet-stream"),
        vector(
            "binary-wide-version",
            bytes(range(256)) * 3,
            version=2**40 + 7,
            segment_size=100,
            media_type="application/octet-stream",
        ),
    ]
    return {
        "description": (
            "Record ciphertexts of ledger_service.crypto.envelope (segmented AES-256-GCM): header = 'CLSTRM' || "
            "0x01 || segment size u32be || nonce prefix (7); nonce = prefix || index u32be || last flag (1); "
            "aad = 'consent-ledger/v1/record-binding\\0' || recordId (32) || version u64be (8) || patient (20) || "
            "header. Made once (the nonce prefix is random); tampered: altered copies of the second vector."
        ),
        "vectors": vectors,
        "tamperedOf": vectors[1]["name"],
        "tampered": tampered(vectors[1]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(build(), indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
