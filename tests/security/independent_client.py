"""A client of Consent Ledger built from its public surface only: the HTTP API, the chain's JSON-RPC and the
EIP-712 type strings of the contract's interface (contracts/src/IConsentLedger.sol).

It imports nothing of the project (no ledger_service, no consent_api; tests/security/test_signed_acts.py
checks this): the typed data, digests, ABI encoding, log reading and sign-in message are written here again
from the specification, so a mistake in the project's own encoders cannot cancel out against the test.
Only the standard library, eth-account (keys and signatures), eth-utils (keccak, addresses), httpx and
cryptography (P-256, for the software passkey).

:class:`SoftPasskey` is a WebAuthn authenticator with one ES256 credential, written from the WebAuthn Level 3
specification (its client data, section 5.8.1; authenticator data, section 6.1; assertion signatures, sections
6.3.3 and 6.5.6) the way a browser and a platform authenticator together answer ``navigator.credentials.get``:
a passkey patient's account (contracts/src/PatientAccount.sol) takes the assertion, ABI-encoded, as its
ERC-1271 signature.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlparse

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address

# anvil's well-known development keys (its default mnemonic): #0 admin, relayer and custodian of
# `consent-ledger up`, #1 Demo Clinic, #2 Demo Lab, #3 auditor, #4-#9 patients (README, "Demo roles").
ANVIL_KEYS = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
)

# The typed messages, exactly as the interface documents them (its `@dev` lines).
TYPE_STRINGS = (
    "ConsentGrant(address patient,address grantee,bytes32 scope,bytes32 purpose,uint64 validFrom,"
    "uint64 validUntil,uint256 nonce,uint256 deadline)",
    "ConsentRevoke(address patient,bytes32 consentId,uint256 nonce,uint256 deadline)",
    "DelegateGrant(address patient,address delegate,uint64 validUntil,uint256 nonce,uint256 deadline)",
    "DelegateRevoke(address patient,address delegate,uint256 nonce,uint256 deadline)",
    "RecordAnchor(address patient,address author,bytes32 category,bytes32 salt,bytes cid,bytes32 commitment,"
    "uint256 nonce,uint256 deadline)",
    "RecordAmend(address patient,address author,bytes32 recordId,bytes cid,bytes32 commitment,"
    "bytes32 previousHash,uint256 nonce,uint256 deadline)",
    "AccessRequest(address patient,address accessor,bytes32 recordId,uint32 version,bytes32 purpose,"
    "uint256 nonce,uint256 deadline)",
    "EmergencyAccessRequest(address patient,address accessor,bytes32 recordId,uint32 version,bytes32 reasonHash,"
    "uint256 nonce,uint256 deadline)",
    "RecordErase(address patient,bytes32 recordId,uint256 nonce,uint256 deadline)",
    "EncryptionKey(address account,bytes32 publicKey,uint256 nonce,uint256 deadline)",
)
DOMAIN_TYPE_STRING = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
# A passkey account's own messages, in its own domain (contracts/src/PatientAccount.sol, its type hashes).
ACCOUNT_TYPE_STRINGS = (
    "AddPasskey(bytes32 qx,bytes32 qy,uint256 nonce,uint256 deadline)",
    "RemovePasskey(bytes32 qx,bytes32 qy,uint256 nonce,uint256 deadline)",
)
ACCOUNT_DOMAIN_NAME = "Consent Ledger Patient Account"
# ERC-6492: the 32 bytes that end a signature of a contract account not deployed yet.
ERC6492_MAGIC = bytes.fromhex("6492" * 16)

# The contract's custom errors and events this client recognizes (canonical signatures of the interface).
ERRORS = (
    "NotActiveProvider(address)",
    "InvalidSigner(address,address)",
    "NotPatientOrDelegate(address,address)",
    "NonceAlreadyUsed(address,uint256)",
    "RevokedByPatient(bytes32)",
    "AccessNotAuthorized(address,bytes32,address,bytes32)",
    "SignatureExpired(uint256,uint256)",
)
EVENTS = {
    "RecordAnchored": "RecordAnchored(bytes32,address,address,uint32,bytes32,bytes,bytes32,bytes32,bytes32)",
    "AccessLogged": "AccessLogged(bytes32,address,address,uint32,bytes32,bytes32,bytes32)",
    "RecordErased": "RecordErased(bytes32,address,address,uint32)",
    "ConsentGranted": "ConsentGranted(bytes32,address,address,bytes32,bytes32,uint64,uint64,address)",
    "ConsentRevoked": "ConsentRevoked(bytes32,address,address)",
    "DelegateGranted": "DelegateGranted(address,address,uint64)",
    "DelegateRevoked": "DelegateRevoked(address,address)",
    "NonceInvalidated": "NonceInvalidated(address,uint256)",
}
ZERO32 = "0x" + "00" * 32

_TYPE_STRING = re.compile(r"^(\w+)\(([^()]*)\)$")


def parse_type_string(text: str) -> tuple[str, list[dict[str, str]]]:
    """``Name(type a,type b)`` -> ``("Name", [{"name": "a", "type": "type"}, ...])``."""
    match = _TYPE_STRING.match(text)
    if match is None:
        raise ValueError(f"not an EIP-712 type string: {text!r}")
    members = [dict(zip(("type", "name"), part.split(" "), strict=True)) for part in match.group(2).split(",")]
    return match.group(1), [{"name": m["name"], "type": m["type"]} for m in members]


TYPES: dict[str, list[dict[str, str]]] = dict(parse_type_string(t) for t in (*TYPE_STRINGS, *ACCOUNT_TYPE_STRINGS))
DOMAIN_MEMBERS = parse_type_string(DOMAIN_TYPE_STRING)[1]


def hex0x(data: bytes) -> str:
    return "0x" + data.hex()


def unhex(text: str) -> bytes:
    return bytes.fromhex(text[2:] if text.startswith("0x") else text)


def bytes32_text(code: str) -> str:
    """A short code as bytes32, right-padded with zeros (``bytes32("TREAT")`` in Solidity)."""
    return hex0x(code.encode().ljust(32, b"\x00"))


def selector(signature: str) -> bytes:
    return bytes(keccak(text=signature))[:4]


def topic(event: str) -> str:
    return hex0x(bytes(keccak(text=EVENTS[event])))


def address_topic(address: str) -> str:
    return hex0x(b"\x00" * 12 + unhex(address))


# ----------------------------------------------------------------- EIP-712, written from the specification


def _encode_member(kind: str, value: Any) -> bytes:
    if kind == "address":
        return b"\x00" * 12 + unhex(to_checksum_address(value))
    if kind == "bytes32":
        raw = unhex(value) if isinstance(value, str) else bytes(value)
        if len(raw) != 32:
            raise ValueError(f"bytes32 of {len(raw)} bytes")
        return raw
    if kind == "bytes":
        return bytes(keccak(unhex(value) if isinstance(value, str) else bytes(value)))
    if kind == "string":
        return bytes(keccak(text=value))
    if kind.startswith("uint"):
        return int(value).to_bytes(32, "big")
    raise ValueError(f"unsupported member type {kind}")


def hash_struct(type_string: str, members: list[dict[str, str]], message: dict[str, Any]) -> bytes:
    encoded = b"".join(_encode_member(m["type"], message[m["name"]]) for m in members)
    return bytes(keccak(bytes(keccak(text=type_string)) + encoded))


@dataclass(frozen=True)
class Eip712:
    """The ledger's signing domain (name "ConsentLedger", version "1", chain id, the ledger's address), or with
    ``name`` another contract's (a passkey account's own: :data:`ACCOUNT_DOMAIN_NAME`, the account)."""

    chain_id: int
    verifying_contract: str
    name: str = "ConsentLedger"

    @property
    def domain(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": "1",
            "chainId": self.chain_id,
            "verifyingContract": to_checksum_address(self.verifying_contract),
        }

    def domain_separator(self) -> bytes:
        return hash_struct(DOMAIN_TYPE_STRING, DOMAIN_MEMBERS, self.domain)

    def digest(self, primary: str, message: dict[str, Any]) -> bytes:
        """``keccak256(0x1901 || domainSeparator || hashStruct(message))``, computed here from the type string."""
        type_string = next(t for t in (*TYPE_STRINGS, *ACCOUNT_TYPE_STRINGS) if t.startswith(primary + "("))
        struct = hash_struct(type_string, TYPES[primary], message)
        return bytes(keccak(b"\x19\x01" + self.domain_separator() + struct))

    def typed_data(self, primary: str, message: dict[str, Any]) -> dict[str, Any]:
        return {
            "types": {"EIP712Domain": DOMAIN_MEMBERS, primary: TYPES[primary]},
            "primaryType": primary,
            "domain": self.domain,
            "message": message,
        }

    def sign(self, key: str | bytes, primary: str, message: dict[str, Any]) -> str:
        """eth-account's EIP-712 signature; refuses to sign if its digest differs from this module's."""
        full = self.typed_data(primary, message)
        signable = encode_typed_data(full_message=full)
        theirs = bytes(keccak(b"\x19" + signable.version + signable.header + signable.body))
        if theirs != self.digest(primary, message):
            raise AssertionError(f"eth-account and this client disagree on the {primary} digest")
        return hex0x(bytes(Account.sign_typed_data(key, full_message=full).signature))


# ----------------------------------------------------------------- ABI (the subset the ledger's calls need)

AbiType = str | tuple["AbiType", ...]


def _dynamic(kind: AbiType) -> bool:
    if isinstance(kind, tuple):
        return any(_dynamic(k) for k in kind)
    return kind in ("bytes", "string")


def _encode_one(kind: AbiType, value: Any) -> bytes:
    if isinstance(kind, tuple):
        return abi_encode(kind, value)
    if kind in ("bytes", "string"):
        if kind == "string":
            raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        else:
            raw = unhex(value) if isinstance(value, str) else bytes(value)
        return len(raw).to_bytes(32, "big") + raw + b"\x00" * (-len(raw) % 32)
    if kind == "bool":
        return int(bool(value)).to_bytes(32, "big")
    return _encode_member(kind, value)


def abi_encode(kinds: tuple[AbiType, ...], values: tuple[Any, ...] | list[Any]) -> bytes:
    """Solidity's ``abi.encode`` for static words, ``bytes`` and tuples of them (head and tail)."""
    if len(kinds) != len(values):
        raise ValueError("as many values as types")
    head_size = sum(32 if _dynamic(k) else len(_encode_one(k, v)) for k, v in zip(kinds, values, strict=True))
    heads, tails = [], b""
    for kind, value in zip(kinds, values, strict=True):
        encoded = _encode_one(kind, value)
        if _dynamic(kind):
            heads.append((head_size + len(tails)).to_bytes(32, "big"))
            tails += encoded
        else:
            heads.append(encoded)
    return b"".join(heads) + tails


def _signature_text(kind: AbiType) -> str:
    return "(" + ",".join(_signature_text(k) for k in kind) + ")" if isinstance(kind, tuple) else kind


def call_data(function: str, kinds: tuple[AbiType, ...], values: tuple[Any, ...]) -> bytes:
    signature = f"{function}({','.join(_signature_text(k) for k in kinds)})"
    return selector(signature) + abi_encode(kinds, values)


def struct_kinds(primary: str) -> tuple[AbiType, ...]:
    return tuple(m["type"] for m in TYPES[primary])


def struct_values(primary: str, message: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(message[m["name"]] for m in TYPES[primary])


def words(data: str | bytes) -> list[bytes]:
    raw = unhex(data) if isinstance(data, str) else data
    return [raw[i : i + 32] for i in range(0, len(raw), 32)]


def word_address(word: bytes) -> str:
    return to_checksum_address(hex0x(word[12:]))


def consent_id_of(patient: str, grantee: str, scope: str, purpose: str) -> str:
    """``keccak256(abi.encode(patient, grantee, scope, purpose))`` (the interface's identifiers)."""
    return hex0x(
        bytes(keccak(abi_encode(("address", "address", "bytes32", "bytes32"), (patient, grantee, scope, purpose))))
    )


def cid_bytes(cid: str) -> bytes:
    """A base32 CIDv1 string (``b`` + RFC 4648 base32, lower case, no padding) in binary."""
    if not cid.startswith("b"):
        raise ValueError(f"not a base32 CIDv1: {cid!r}")
    body = cid[1:].upper()
    return base64.b32decode(body + "=" * (-len(body) % 8))


# ----------------------------------------------------------------- a passkey, written from the WebAuthn specification

# P-256's group order (SEC 2, section 2.4.2): a signature's s is taken in its lower half, as the account wants.
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
FLAG_UP = 0x01  # user present (WebAuthn 6.1, flags bit 0)
FLAG_UV = 0x04  # user verified (bit 2)


def base64url(data: bytes) -> str:
    """RFC 4648 section 5, without padding, as WebAuthn encodes a challenge in the client data."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class Assertion:
    """What ``navigator.credentials.get`` answers, with the signature as its two P-256 integers."""

    authenticator_data: bytes
    client_data_json: bytes
    r: int
    s: int

    @property
    def challenge_index(self) -> int:
        return self.client_data_json.index(b'"challenge":"')

    @property
    def type_index(self) -> int:
        return self.client_data_json.index(b'"type":"')

    def encoded(self) -> bytes:
        """``abi.encode(bytes32 r, bytes32 s, uint256 challengeIndex, uint256 typeIndex, bytes authenticatorData,
        string clientDataJSON)``: the account's ERC-1271 signature (OpenZeppelin's WebAuthnAuth)."""
        return abi_encode(
            ("bytes32", "bytes32", "uint256", "uint256", "bytes", "string"),
            (
                self.r.to_bytes(32, "big"),
                self.s.to_bytes(32, "big"),
                self.challenge_index,
                self.type_index,
                self.authenticator_data,
                self.client_data_json,
            ),
        )


class SoftPasskey:
    """A WebAuthn authenticator holding one ES256 credential (P-256 with SHA-256), for relying party ``rp_id``,
    used from a page of ``origin``."""

    def __init__(self, *, rp_id: str = "127.0.0.1", origin: str = "http://127.0.0.1") -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.rp_id = rp_id
        self.origin = origin
        self.sign_count = 0
        numbers = self._key.public_key().public_numbers()
        self.x = numbers.x.to_bytes(32, "big")
        self.y = numbers.y.to_bytes(32, "big")

    @property
    def public_key(self) -> dict[str, str]:
        """The credential's public key as ``POST /v1/accounts`` takes it."""
        return {"x": hex0x(self.x), "y": hex0x(self.y)}

    def client_data_json(self, challenge: bytes) -> bytes:
        """CollectedClientData for an assertion, in the specification's JSON-compatible serialization (5.8.1.1):
        the members in this order, the challenge base64url-encoded."""
        members = (("type", "webauthn.get"), ("challenge", base64url(challenge)), ("origin", self.origin))
        body = ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in members)
        return ("{" + body + ',"crossOrigin":false}').encode("utf-8")

    def authenticator_data(self, flags: int) -> bytes:
        """rpIdHash (SHA-256 of the RP ID) || flags || signCount, big-endian (6.1); no extensions."""
        self.sign_count += 1
        return hashlib.sha256(self.rp_id.encode()).digest() + bytes((flags,)) + self.sign_count.to_bytes(4, "big")

    def assertion(self, challenge: bytes, *, flags: int = FLAG_UP | FLAG_UV) -> Assertion:
        """The authenticator's signature over authenticatorData || SHA-256(clientDataJSON) (6.3.3 step 11)."""
        client_data = self.client_data_json(challenge)
        auth_data = self.authenticator_data(flags)
        der = self._key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        if s > P256_ORDER // 2:  # the same signature with the other s: the account takes the lower one only
            s = P256_ORDER - s
        return Assertion(auth_data, client_data, r, s)

    def sign(self, digest: bytes, *, flags: int = FLAG_UP | FLAG_UV) -> bytes:
        """A passkey signature of a 32-byte digest (its EIP-712 digest, or a sign-in message's EIP-191 hash): the
        digest is the WebAuthn challenge."""
        return self.assertion(digest, flags=flags).encoded()


def personal_digest(text: str) -> bytes:
    """EIP-191 version 0x45: keccak256("\\x19Ethereum Signed Message:\\n" + len(message) + message)."""
    data = text.encode("utf-8")
    return bytes(keccak(b"\x19Ethereum Signed Message:\n" + str(len(data)).encode() + data))


def erc6492_wrap(factory: str, factory_calldata: bytes, signature: bytes) -> bytes:
    """``abi.encode(address factory, bytes factoryCalldata, bytes signature) ++ magic`` (ERC-6492)."""
    return abi_encode(("address", "bytes", "bytes"), (factory, factory_calldata, signature)) + ERC6492_MAGIC


# ----------------------------------------------------------------- the chain over raw JSON-RPC


class Reverted(Exception):
    """An ``eth_call`` reverted; ``data`` is the revert data (selector and arguments)."""

    def __init__(self, data: bytes, message: str) -> None:
        super().__init__(message)
        self.data = data

    @property
    def error(self) -> str | None:
        """The name of the interface's custom error the data starts with, if it is one of :data:`ERRORS`."""
        for signature in ERRORS:
            if self.data[:4] == selector(signature):
                return signature.split("(", 1)[0]
        return None


class Chain:
    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(timeout=60)
        self._id = 0

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, params: list[Any]) -> Any:
        self._id += 1
        response = self.http.post(self.url, json={"jsonrpc": "2.0", "id": self._id, "method": method, "params": params})
        response.raise_for_status()
        body = response.json()
        if "error" in body:
            error = body["error"]
            data = error.get("data")
            if isinstance(data, dict):
                data = data.get("data")
            if isinstance(data, str) and data.startswith("0x"):
                raise Reverted(unhex(data), str(error.get("message")))
            raise RuntimeError(f"{method}: {error}")
        return body["result"]

    def block_number(self) -> int:
        return int(self.request("eth_blockNumber", []), 16)

    def call(self, to: str, data: bytes, *, sender: str | None = None) -> bytes:
        tx: dict[str, Any] = {"to": to, "data": hex0x(data)}
        if sender is not None:
            tx["from"] = sender
        return unhex(self.request("eth_call", [tx, "latest"]))

    def view(self, to: str, function: str, kinds: tuple[AbiType, ...], values: tuple[Any, ...]) -> list[bytes]:
        return words(self.call(to, call_data(function, kinds, values)))

    def send(self, key: str | bytes, to: str, data: bytes, *, gas: int = 500_000) -> dict[str, Any]:
        """Sign locally, send raw, wait for the receipt. A fixed gas limit: a revert is mined (status 0)."""
        account = Account.from_key(key)
        base_fee = int(self.request("eth_getBlockByNumber", ["latest", False])["baseFeePerGas"], 16)
        tx = {
            "chainId": int(self.request("eth_chainId", []), 16),
            "nonce": int(self.request("eth_getTransactionCount", [account.address, "pending"]), 16),
            "to": to_checksum_address(to),
            "value": 0,
            "data": hex0x(data),
            "gas": gas,
            "maxPriorityFeePerGas": 10**9,
            "maxFeePerGas": 2 * base_fee + 10**9,
            "type": 2,
        }
        raw = Account.sign_transaction(tx, account.key).raw_transaction
        tx_hash = self.request("eth_sendRawTransaction", [hex0x(bytes(raw))])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            receipt = self.request("eth_getTransactionReceipt", [tx_hash])
            if receipt is not None:
                return dict(receipt)
            time.sleep(0.1)
        raise TimeoutError(f"no receipt for {tx_hash}")

    def logs(self, address: str, topics: list[str | None], from_block: int = 0) -> list[dict[str, Any]]:
        query = {"address": address, "fromBlock": hex(from_block), "toBlock": "latest", "topics": topics}
        return list(self.request("eth_getLogs", [query]))


# ----------------------------------------------------------------- the HTTP API


def siwe_message(url: str, address: str, chain_id: int, nonce: str) -> str:
    """An EIP-4361 message for the server at ``url`` (its origin is what sign-in messages must name)."""
    now = datetime.now(UTC)
    return "\n".join(
        [
            f"{urlparse(url).netloc} wants you to sign in with your Ethereum account:",
            to_checksum_address(address),
            "",
            "Sign in to Consent Ledger",
            "",
            f"URI: {url}",
            "Version: 1",
            f"Chain ID: {chain_id}",
            f"Nonce: {nonce}",
            f"Issued At: {now.strftime('%Y-%m-%dT%H:%M:%SZ')}",
            f"Expiration Time: {(now + timedelta(minutes=30)).strftime('%Y-%m-%dT%H:%M:%SZ')}",
        ]
    )


class LedgerApi:
    """The hub's public API and, beside it, the chain it names in ``GET /v1/chain``."""

    def __init__(self, url: str, rpc_url: str) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=120)
        info = self.http.get("/v1/chain").raise_for_status().json()
        self.chain_id = int(info["chainId"])
        self.ledger = to_checksum_address(info["contracts"]["ConsentLedger"])
        self.categories: dict[str, str] = dict(info["categories"])
        self.eip712 = Eip712(self.chain_id, self.ledger)
        if info["eip712Domain"] != self.eip712.domain:
            raise AssertionError(f"the server's EIP-712 domain {info['eip712Domain']} is not the specified one")
        self.chain = Chain(rpc_url)

    def close(self) -> None:
        self.http.close()
        self.chain.close()

    def sign_in(self, account: LocalAccount) -> dict[str, str]:
        nonce = self.http.get("/v1/auth/nonce").raise_for_status().json()["nonce"]
        message = siwe_message(self.url, account.address, self.chain_id, nonce)
        signature = hex0x(bytes(Account.sign_message(encode_defunct(text=message), account.key).signature))
        response = self.http.post("/v1/auth/login", json={"message": message, "signature": signature})
        if response.status_code != 200:
            raise AssertionError(f"sign-in of {account.address} failed: {response.status_code} {response.text}")
        return {"Authorization": f"Bearer {response.json()['token']}"}

    def sign_in_with(self, address: str, sign: Any) -> httpx.Response:
        """A sign-in of ``address`` whose signature ``sign(message)`` makes (a passkey's, a contract's)."""
        nonce = self.http.get("/v1/auth/nonce").raise_for_status().json()["nonce"]
        message = siwe_message(self.url, address, self.chain_id, nonce)
        return self.http.post("/v1/auth/login", json={"message": message, "signature": hex0x(sign(message))})

    def nonce(self, signer: str) -> int:
        return int(self.http.get(f"/v1/nonces/{signer}").raise_for_status().json()["nonce"])

    # --- passkey accounts (contracts/src/PatientAccountFactory.sol, PatientAccount.sol)

    @property
    def account_factory(self) -> str:
        info = self.http.get("/v1/chain").raise_for_status().json()
        return to_checksum_address(info["contracts"]["PatientAccountFactory"])

    def account_of(self, passkey: SoftPasskey) -> str:
        """``accountOf(qx, qy)``, asked of the factory on chain."""
        word = self.chain.view(self.account_factory, "accountOf", ("bytes32", "bytes32"), (passkey.x, passkey.y))
        return word_address(word[0])

    def create_account_call(self, passkey: SoftPasskey) -> bytes:
        return call_data("createAccount", ("bytes32", "bytes32"), (passkey.x, passkey.y))

    def account_digest(self, account: str, primary: str, message: dict[str, Any]) -> bytes:
        """The EIP-712 digest of an account's own AddPasskey / RemovePasskey (its domain, its address)."""
        return Eip712(self.chain_id, account, ACCOUNT_DOMAIN_NAME).digest(primary, message)

    def passkey_change(self, account: str, primary: str, key: SoftPasskey, signer: SoftPasskey) -> dict[str, Any]:
        """The body of ``POST /v1/accounts/{account}/passkeys[/remove]``: ``key`` added or removed, signed by
        ``signer`` (one of the account's passkeys) with an unused nonce of the account's."""
        nonce = secrets.randbits(64)
        message = {"qx": key.x, "qy": key.y, "nonce": nonce, "deadline": self.deadline()}
        signature = hex0x(signer.sign(self.account_digest(account, primary, message)))
        return {"publicKey": key.public_key, "nonce": nonce, "deadline": message["deadline"], "signature": signature}

    def account_nonce_used(self, account: str, nonce: int) -> bool:
        return int.from_bytes(self.chain.view(account, "nonceUsed", ("uint256",), (nonce,))[0], "big") == 1

    def code(self, address: str) -> bytes:
        return unhex(self.chain.request("eth_getCode", [to_checksum_address(address), "latest"]))

    def deadline(self, seconds: int = 3600) -> int:
        return int(time.time()) + seconds

    def signed(self, key: str | bytes, primary: str, message: dict[str, Any]) -> str:
        return self.eip712.sign(key, primary, message)

    def relay(self, primary: str, message: dict[str, Any], signature: str) -> httpx.Response:
        return self.http.post("/v1/relay", json={"primaryType": primary, "message": message, "signature": signature})

    # --- messages, as the JSON the API takes (addresses checksummed, bytes 0x-hex, integers as numbers)

    def consent_grant(
        self, patient: str, grantee: str, *, nonce: int, scope: str = ZERO32, purpose: str = "TREAT"
    ) -> dict[str, Any]:
        return {
            "patient": to_checksum_address(patient),
            "grantee": to_checksum_address(grantee),
            "scope": scope,
            "purpose": bytes32_text(purpose),
            "validFrom": 0,
            "validUntil": 0,
            "nonce": nonce,
            "deadline": self.deadline(),
        }

    def access_request(self, patient: str, accessor: str, record_id: str, *, nonce: int) -> dict[str, Any]:
        return {
            "patient": to_checksum_address(patient),
            "accessor": to_checksum_address(accessor),
            "recordId": record_id,
            "version": 1,
            "purpose": bytes32_text("TREAT"),
            "nonce": nonce,
            "deadline": self.deadline(),
        }

    def record_erase(self, patient: str, record_id: str, *, nonce: int) -> dict[str, Any]:
        return {
            "patient": to_checksum_address(patient),
            "recordId": record_id,
            "nonce": nonce,
            "deadline": self.deadline(),
        }

    # --- views of the ledger, read straight from the chain

    def is_authorized(self, patient: str, grantee: str, record_id: str, purpose: str = "TREAT") -> bool:
        kinds = ("address", "address", "bytes32", "bytes32")
        word = self.chain.view(self.ledger, "isAuthorized", kinds, (patient, grantee, record_id, bytes32_text(purpose)))
        return int.from_bytes(word[0], "big") == 1

    def nonce_used(self, signer: str, nonce: int) -> bool:
        return (
            int.from_bytes(self.chain.view(self.ledger, "nonceUsed", ("address", "uint256"), (signer, nonce))[0], "big")
            == 1
        )

    def is_live_delegate(self, patient: str, delegate: str) -> bool:
        word = self.chain.view(self.ledger, "isLiveDelegate", ("address", "address"), (patient, delegate))
        return int.from_bytes(word[0], "big") == 1

    def consent_state(self, consent_id: str) -> dict[str, Any]:
        """``consent(id)``: (patient, validFrom, validUntil, revoked, revokedByPatient)."""
        w = self.chain.view(self.ledger, "consent", ("bytes32",), (consent_id,))
        return {
            "patient": word_address(w[0]),
            "revoked": int.from_bytes(w[3], "big") == 1,
            "revokedByPatient": int.from_bytes(w[4], "big") == 1,
        }

    def events(self, event: str, *indexed: str | None, from_block: int = 0) -> list[dict[str, Any]]:
        return self.chain.logs(self.ledger, [topic(event), *indexed], from_block)


def fresh_salt() -> str:
    return hex0x(secrets.token_bytes(32))
