"""Write tests/vectors/key_shares.json: data keys split 2-of-3 (and 3-of-5) and sealed with HPKE.

    python scripts/make_share_vectors.py [--out tests/vectors/key_shares.json]

Everything but the sealing is deterministic: the X25519 private keys, data keys, record slots and the
polynomial randomness fed to ``shamir.split(random=...)`` are derived from fixed labels, so the shares
are the same on every run. HPKE encryption draws a fresh ephemeral key each time, so the sealed shares
are stored as produced once; the tests check that they open (in Python and in the browser) to the stated
shares and combine to the stated data key, not that a re-run reproduces them.

The ``info`` bytes are built here from the key-share format (docs/architecture.md, "Key custody") rather
than by the service's own module, so the vectors check that module instead of echoing it. Every byte
string in the JSON is 0x-prefixed lowercase hex.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ledger_service.crypto.shamir import split

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "tests" / "vectors" / "key_shares.json"

INFO_DOMAIN = b"consent-ledger/v2/key-share\x00"
SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
SUITE_IDS = {"kem": 0x0020, "kdf": 0x0001, "aead": 0x0002}


def derived(label: str, size: int = 32) -> bytes:
    """Fixed bytes for ``label`` (SHA-256 in counter mode): vectors, never real keys."""
    out = b""
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"consent-ledger/test-vectors/{label}/{counter}".encode()).digest()
        counter += 1
    return out[:size]


def hex0x(data: bytes) -> str:
    return "0x" + data.hex()


def share_info(chain_id: int, ledger: bytes, record_id: bytes, version: int, index: int, recipient: bytes) -> bytes:
    return b"".join(
        (
            INFO_DOMAIN,
            chain_id.to_bytes(32, "big"),
            ledger,
            record_id,
            version.to_bytes(4, "big"),
            index.to_bytes(1, "big"),
            recipient,
        )
    )


def public_bytes(private: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def vector(name: str, *, threshold: int, total: int, chain_id: int, version: int, recipients: str) -> dict[str, Any]:
    """One data key split ``threshold``-of-``total``, every share sealed to its custodian's long-term key
    (``recipients="custodians"``, the node's deposit) or all to one accessor (``"accessor"``, the release)."""
    data_key = derived(f"{name}/data-key")
    randomness = derived(f"{name}/polynomial", len(data_key) * (threshold - 1))
    ledger = derived(f"{name}/ledger", 20)
    record_id = derived(f"{name}/record-id")

    def fixed(n: int) -> bytes:
        assert n == len(randomness)
        return randomness

    shares = split(data_key, threshold, total, random=fixed)
    sealed_shares = []
    for index, share in enumerate(shares, start=1):
        label = f"custodian-{index}" if recipients == "custodians" else "accessor"
        private = derived(f"{name}/{label}/x25519")
        public = public_bytes(private)
        info = share_info(chain_id, ledger, record_id, version, index, public)
        sealed = SUITE.encrypt(share, X25519PrivateKey.from_private_bytes(private).public_key(), info=info)
        sealed_shares.append(
            {
                "index": index,
                "recipient": label,
                "recipientPrivateKey": hex0x(private),
                "recipientPublicKey": hex0x(public),
                "info": hex0x(info),
                "sealed": hex0x(sealed),
            }
        )
    return {
        "name": name,
        "threshold": threshold,
        "total": total,
        "dataKey": hex0x(data_key),
        "polynomialRandomness": hex0x(randomness),
        "chainId": chain_id,
        "ledger": hex0x(ledger),
        "recordId": hex0x(record_id),
        "version": version,
        "shares": [hex0x(share) for share in shares],
        "sealedShares": sealed_shares,
    }


def build() -> dict[str, Any]:
    return {
        "description": (
            "Key-share vectors: Shamir over GF(2^8) (0x11b), share = y (32) || x (1) with x = custodian index; "
            "HPKE base mode DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / AES-256-GCM, empty aad, "
            "sealed = enc (32) || ciphertext (49); info = infoDomain || chainId (32) || ledger (20) || "
            "recordId (32) || version (4) || index (1) || recipient public key (32). polynomialRandomness is "
            "what shamir.split(random=...) returned: byte k of the data key uses bytes k*(t-1) .. (k+1)*(t-1)-1 "
            "as the coefficients of x^1 .. x^(t-1). Sealed shares were produced once (HPKE is randomized)."
        ),
        "suite": {key: f"0x{value:04x}" for key, value in SUITE_IDS.items()},
        "infoDomain": hex0x(INFO_DOMAIN),
        "vectors": [
            vector("deposit-2-of-3", threshold=2, total=3, chain_id=31337, version=1, recipients="custodians"),
            vector("release-2-of-3", threshold=2, total=3, chain_id=31337, version=1, recipients="accessor"),
            vector(
                "release-2-of-3-wide-fields",
                threshold=2,
                total=3,
                chain_id=11155111,
                version=2**32 - 1,
                recipients="accessor",
            ),
            vector("deposit-3-of-5", threshold=3, total=5, chain_id=31337, version=4, recipients="custodians"),
        ],
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
