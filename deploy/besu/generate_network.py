#!/usr/bin/env python3
"""Generate the Besu QBFT network files for docker-compose.yml.

Two modes:

* ``new --secrets-dir DIR``: create fresh secp256k1 node keys for the validators. The private
  keys go to ``DIR/validator-N/key`` (mode 0600, never inside this repository); the public
  halves go to ``deploy/besu/keys/validator-N/{key.pub,address}``.
* ``from-public``: keep the committed public keys (e.g. after an operator replaced them with
  keys made by ``besu public-key export``) and only rewrite the derived files.

Either way the derived files are rewritten from the public keys:
``genesis.json`` (QBFT extraData with the validator list, every fork through Osaka), ``permissions_config.toml``
(the node allowlist) and ``static-nodes.json``. Validator N listens on 172.16.240.(10+N):30303,
the fixed addresses docker-compose.yml gives the validators on its ``chain`` network.

Run with the project's venv (it needs coincurve, eth-utils and rlp):
    .venv/bin/python deploy/besu/generate_network.py new --secrets-dir ~/consent-ledger-secrets/besu
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import rlp
from coincurve import PrivateKey
from eth_utils import keccak, to_checksum_address

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
KEYS_DIR = HERE / "keys"
VALIDATORS = 4
SUBNET_PREFIX = "172.16.240."
P2P_PORT = 30303

CHAIN_ID = 27182
QBFT = {"blockperiodseconds": 2, "epochlength": 30000, "requesttimeoutseconds": 4}
# QBFT's fixed mixHash ("ctical byzantine fault tolerance" in ASCII, as Besu requires).
QBFT_MIX_HASH = "0x63746963616c2062797a616e74696e65206661756c7420746f6c6572616e6365"

# Every fork through Osaka is active from the genesis block. Osaka brings the P-256 signature
# precompile (EIP-7951, address 0x100) that patients' passkey signatures are verified with; Besu runs
# it from 25.11.0 (docs/operations.md, "Forks").
BLOCK_FORKS = (
    "homesteadBlock",
    "eip150Block",
    "eip155Block",
    "eip158Block",
    "byzantiumBlock",
    "constantinopleBlock",
    "petersburgBlock",
    "istanbulBlock",
    "berlinBlock",
    "londonBlock",
)
TIME_FORKS = ("shanghaiTime", "cancunTime", "pragueTime", "osakaTime")

# Prague's execution requests (EIP-7685). With Prague on, Besu 25.11 will not start without these three
# addresses, and on QBFT too it calls the withdrawal (EIP-7002) and consolidation (EIP-7251) request
# contracts after every block, rejecting the block if either address holds no code. QBFT has no beacon
# chain to take such requests, so each address holds a contract whose code is a single STOP: every
# call yields no request, and no deposit log (EIP-6110) can come from the deposit address. They are
# Ethereum mainnet's addresses.
REQUEST_CONTRACTS = {
    "depositContractAddress": "0x00000000219ab540356cBB839Cbe05303d7705Fa",
    "withdrawalRequestContractAddress": "0x00000961Ef480Eb55e80D19ad83579A64c007002",
    "consolidationRequestContractAddress": "0x0000BBdDc7CE488642fb579F8B00f3a590007251",
}
STOP_CODE = "0x00"


def validator_ip(index: int) -> str:
    return f"{SUBNET_PREFIX}{10 + index}"


def address_of(public_key: bytes) -> str:
    """The account (and QBFT validator) address of a 64-byte uncompressed public key."""
    if len(public_key) != 64:
        raise ValueError("expected a 64-byte public key (no 0x04 prefix)")
    return to_checksum_address(keccak(public_key)[12:])


def enode(public_key: bytes, index: int) -> str:
    return f"enode://{public_key.hex()}@{validator_ip(index)}:{P2P_PORT}"


def qbft_extra_data(addresses: list[str]) -> str:
    """RLP([32-byte vanity, [validators], vote (empty), round 0, seals (empty)]).

    The validators are listed in ascending address order, the order Besu keeps them in.
    """
    validators = sorted(bytes.fromhex(a[2:]) for a in addresses)
    encoded: bytes = rlp.encode([b"\x00" * 32, validators, [], 0, []])
    return "0x" + encoded.hex()


def genesis(addresses: list[str]) -> dict[str, object]:
    return {
        "config": {
            "chainId": CHAIN_ID,
            **dict.fromkeys(BLOCK_FORKS, 0),
            **dict.fromkeys(TIME_FORKS, 0),
            **REQUEST_CONTRACTS,
            "zeroBaseFee": True,
            "qbft": dict(QBFT),
        },
        "nonce": "0x0",
        "timestamp": "0x0",
        "gasLimit": "0x1fffffffffffff",
        "difficulty": "0x1",
        "mixHash": QBFT_MIX_HASH,
        "coinbase": "0x0000000000000000000000000000000000000000",
        "baseFeePerGas": "0x0",
        "alloc": {address: {"balance": "0x0", "code": STOP_CODE} for address in REQUEST_CONTRACTS.values()},
        "extraData": qbft_extra_data(addresses),
    }


def read_public_keys() -> list[bytes]:
    keys = []
    for index in range(1, VALIDATORS + 1):
        text = (KEYS_DIR / f"validator-{index}" / "key.pub").read_text(encoding="utf-8").strip()
        keys.append(bytes.fromhex(text.removeprefix("0x")))
    return keys


def write_private_key(secrets_dir: Path, index: int, key: PrivateKey) -> None:
    target = secrets_dir / f"validator-{index}"
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = target / "key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write("0x" + key.secret.hex())


def new_keys(secrets_dir: Path) -> list[bytes]:
    secrets_dir = secrets_dir.expanduser().resolve()
    if secrets_dir == REPO_ROOT or REPO_ROOT in secrets_dir.parents:
        raise SystemExit(f"refusing to write private node keys inside the repository ({secrets_dir})")
    existing = [secrets_dir / f"validator-{i}" / "key" for i in range(1, VALIDATORS + 1)]
    if any(p.exists() for p in existing):
        raise SystemExit(f"{secrets_dir} already holds node keys; move them away first")
    public_keys = []
    for index in range(1, VALIDATORS + 1):
        key = PrivateKey()
        write_private_key(secrets_dir, index, key)
        public = key.public_key.format(compressed=False)[1:]
        public_keys.append(public)
        folder = KEYS_DIR / f"validator-{index}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "key.pub").write_text("0x" + public.hex() + "\n", encoding="ascii")
        (folder / "address").write_text(address_of(public) + "\n", encoding="ascii")
    return public_keys


def write_derived(public_keys: list[bytes]) -> None:
    addresses = [address_of(p) for p in public_keys]
    for index, address in enumerate(addresses, start=1):
        recorded = (KEYS_DIR / f"validator-{index}" / "address").read_text(encoding="utf-8").strip()
        if recorded.lower() != address.lower():
            raise SystemExit(f"validator-{index}: address file {recorded} does not match key.pub ({address})")
    (HERE / "genesis.json").write_text(json.dumps(genesis(addresses), indent=2) + "\n", encoding="utf-8")
    enodes = [enode(p, i) for i, p in enumerate(public_keys, start=1)]
    allowlist = ",\n  ".join(f'"{e}"' for e in enodes)
    (HERE / "permissions_config.toml").write_text(
        "# Besu node allowlist (--permissions-nodes-config-file). Generated by generate_network.py.\n"
        f"nodes-allowlist=[\n  {allowlist}\n]\n",
        encoding="utf-8",
    )
    (HERE / "static-nodes.json").write_text(json.dumps(enodes, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    new = sub.add_parser("new", help="create fresh node keys, then the derived files")
    new.add_argument("--secrets-dir", required=True, type=Path, help="where the private node keys go (not the repo)")
    sub.add_parser("from-public", help="rewrite the derived files from the committed public keys")
    args = parser.parse_args(argv)
    public_keys = new_keys(args.secrets_dir) if args.mode == "new" else read_public_keys()
    write_derived(public_keys)
    for index, public in enumerate(public_keys, start=1):
        print(f"validator-{index}  {address_of(public)}  {enode(public, index)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
