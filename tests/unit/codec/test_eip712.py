"""The fast EIP-712 digest and signer recovery give exactly eth-account's results and refusals."""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any
from unittest import mock

import pytest
from coincurve import PrivateKey
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak, to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger_service.codec import eip712
from ledger_service.domain.consent import (
    AccessRequest,
    ConsentGrant,
    ConsentRevoke,
    DelegateGrant,
    DelegateRevoke,
    Eip712Domain,
    EmergencyAccessRequest,
    EncryptionKey,
    RecordAmend,
    RecordAnchor,
    RecordErase,
    SignedMessage,
    typed_data,
)
from ledger_service.domain.passkeys import AddPasskey, RemovePasskey
from ledger_service.errors import SignatureError
from ledger_service.hub.relay import Relay

N = eip712.SECP256K1_N
DOMAIN = Eip712Domain(chain_id=31337, verifying_contract="0x5FbDB2315678afecb367f032d93F642f64180aa3")
KEY = bytes.fromhex("59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d")
PATIENT = Account.from_key(KEY).address
CLINIC = "0x70997970C51812dc3A010C7d01b50e20d17dc79C"
GRANT = ConsentGrant(PATIENT, CLINIC, b"\x00" * 32, b"TREAT".ljust(32, b"\x00"), 0, 2**32, 3, 2**40)


def _reference_digest(domain: Eip712Domain, message: SignedMessage) -> bytes:
    """What ``ConsentService._recover`` stored as the replay key before: eth-account's signable, hashed."""
    signable = encode_typed_data(full_message=typed_data(domain, message))
    return bytes(keccak(b"\x19" + signable.version + signable.header + signable.body))


def _outcome(fn: Any, *args: Any) -> tuple[str, object]:
    try:
        return ("ok", fn(*args))
    except Exception as exc:
        return ("refused", type(exc).__name__)


def _eth_account_recover(message_digest: bytes, signature: bytes) -> str:
    return str(Account._recover_hash(message_digest, signature=signature))


def _refused_by_eth_account(message_digest: bytes, signature: bytes) -> bool:
    return _outcome(_eth_account_recover, message_digest, signature)[0] == "refused"


def _fast_outcome(message_digest: bytes, signature: bytes) -> tuple[str, object]:
    kind, value = _outcome(eip712.recover, message_digest, signature)
    return (kind, value if kind == "ok" else "refused")


def _slow_outcome(message_digest: bytes, signature: bytes) -> tuple[str, object]:
    kind, value = _outcome(_eth_account_recover, message_digest, signature)
    return (kind, value if kind == "ok" else "refused")


addresses = st.binary(min_size=20, max_size=20).flatmap(
    lambda raw: st.sampled_from(["0x" + raw.hex(), to_checksum_address(raw), "0x" + raw.hex().upper()])
)
bytes32 = st.binary(min_size=32, max_size=32)
uint64 = st.integers(0, 2**64 - 1)
uint256 = st.one_of(st.integers(0, 2**256 - 1), st.sampled_from([0, 1, 2**64, 2**255, 2**256 - 1]))

grants = st.builds(ConsentGrant, addresses, addresses, bytes32, bytes32, uint64, uint64, uint256, uint256)
revokes = st.builds(ConsentRevoke, addresses, bytes32, uint256, uint256)
delegations = st.builds(DelegateGrant, addresses, addresses, uint64, uint256, uint256)
uint32 = st.integers(0, 2**32 - 1)
cids = st.one_of(st.binary(min_size=1, max_size=80), st.just(b""))
messages = st.one_of(
    grants,
    revokes,
    delegations,
    st.builds(DelegateRevoke, addresses, addresses, uint256, uint256),
    st.builds(RecordAnchor, addresses, addresses, bytes32, bytes32, cids, bytes32, uint256, uint256),
    st.builds(RecordAmend, addresses, addresses, bytes32, cids, bytes32, bytes32, uint256, uint256),
    st.builds(AccessRequest, addresses, addresses, bytes32, uint32, bytes32, uint256, uint256),
    st.builds(EmergencyAccessRequest, addresses, addresses, bytes32, uint32, bytes32, uint256, uint256),
    st.builds(RecordErase, addresses, bytes32, uint256, uint256),
    st.builds(EncryptionKey, addresses, bytes32, uint256, uint256),
)
domains = st.builds(
    Eip712Domain,
    chain_id=uint256,
    verifying_contract=addresses,
    name=st.one_of(st.just("ConsentLedger"), st.text(max_size=40)),
    version=st.one_of(st.just("1"), st.text(max_size=8)),
)
keys = st.integers(1, N - 1).map(lambda k: k.to_bytes(32, "big"))


# ----------------------------------------------------------------- digest


@settings(max_examples=200, deadline=None)
@given(domain=domains, message=messages)
def test_digest_equals_eth_accounts_and_takes_the_fast_path(domain: Eip712Domain, message: SignedMessage) -> None:
    expected = _reference_digest(domain, message)
    with mock.patch.object(eip712, "encode_typed_data", side_effect=AssertionError("slow path taken")):
        assert eip712.digest(domain, message) == expected


# Values outside the plain shape: eth-account pads, converts or refuses them, and so must digest().
# Values outside the plain shape: eth-account pads, converts or refuses them, and so must digest().
odd_values = st.one_of(
    st.sampled_from([-1, 2**64 - 1, 2**64, 2**256 - 1, 2**256, -(2**255), True, False, 1.0, None, 7]),
    st.sampled_from(["0x10", "12", "text", "0x" + "ab" * 32, "0x" + "ab" * 31, "", bytearray(32), b"\x01" * 20]),
    st.sampled_from(["0x" + "ab" * 19, "ab" * 20, "0X" + "ab" * 20, "0x" + "zz" * 20, "0x" + "ab" * 19 + "  "]),
    st.binary(max_size=40),
    addresses,
    st.integers(-(2**300), 2**300),
)


@settings(max_examples=300, deadline=None)
@given(domain=domains, message=messages, data=st.data())
def test_digest_of_odd_values_is_eth_accounts_result_or_error(
    domain: Eip712Domain, message: SignedMessage, data: st.DataObject
) -> None:
    """One field of the message or the domain replaced by an odd value: the same digest or the same error."""
    target: Any = data.draw(st.sampled_from(["message", "domain"]))
    names = [f.name for f in fields(message if target == "message" else domain)]
    changed = {data.draw(st.sampled_from(names)): data.draw(odd_values)}
    if target == "message":
        message = replace(message, **changed)
    else:
        domain = replace(domain, **changed)

    def full(fn: Any) -> tuple[str, object]:
        try:
            return ("ok", fn(domain, message))
        except Exception as exc:
            return ("refused", f"{type(exc).__name__}: {exc}")

    assert full(eip712.digest) == full(_reference_digest)


def test_type_hashes_are_the_designs() -> None:
    """The type strings the contract declares, hashed (a typo in consent.EIP712_TYPES would show here)."""
    design = {
        ConsentGrant: "ConsentGrant(address patient,address grantee,bytes32 scope,bytes32 purpose,"
        "uint64 validFrom,uint64 validUntil,uint256 nonce,uint256 deadline)",
        ConsentRevoke: "ConsentRevoke(address patient,bytes32 consentId,uint256 nonce,uint256 deadline)",
        DelegateGrant: "DelegateGrant(address patient,address delegate,uint64 validUntil,"
        "uint256 nonce,uint256 deadline)",
        DelegateRevoke: "DelegateRevoke(address patient,address delegate,uint256 nonce,uint256 deadline)",
        RecordAnchor: "RecordAnchor(address patient,address author,bytes32 category,bytes32 salt,bytes cid,"
        "bytes32 commitment,uint256 nonce,uint256 deadline)",
        RecordAmend: "RecordAmend(address patient,address author,bytes32 recordId,bytes cid,bytes32 commitment,"
        "bytes32 previousHash,uint256 nonce,uint256 deadline)",
        AccessRequest: "AccessRequest(address patient,address accessor,bytes32 recordId,uint32 version,"
        "bytes32 purpose,uint256 nonce,uint256 deadline)",
        EmergencyAccessRequest: "EmergencyAccessRequest(address patient,address accessor,bytes32 recordId,"
        "uint32 version,bytes32 reasonHash,uint256 nonce,uint256 deadline)",
        RecordErase: "RecordErase(address patient,bytes32 recordId,uint256 nonce,uint256 deadline)",
        EncryptionKey: "EncryptionKey(address account,bytes32 publicKey,uint256 nonce,uint256 deadline)",
        # A passkey account's own (contracts/src/PatientAccount.sol).
        AddPasskey: "AddPasskey(bytes32 qx,bytes32 qy,uint256 nonce,uint256 deadline)",
        RemovePasskey: "RemovePasskey(bytes32 qx,bytes32 qy,uint256 nonce,uint256 deadline)",
    }
    assert set(design) == set(eip712._STRUCTS)
    for cls, text in design.items():
        assert eip712._STRUCTS[cls][0] == keccak(text=text)
    domain_type = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
    assert keccak(text=domain_type) == eip712._DOMAIN_TYPE_HASH


# ----------------------------------------------------------------- recovery


@settings(max_examples=200, deadline=None)
@given(key=keys, domain=domains, message=messages)
def test_recover_equals_eth_accounts(key: bytes, domain: Eip712Domain, message: SignedMessage) -> None:
    full = typed_data(domain, message)
    signature = bytes(Account.sign_typed_data(key, full_message=full).signature)
    message_digest = eip712.digest(domain, message)
    signer = eip712.recover(message_digest, signature)
    assert signer == Account.recover_message(encode_typed_data(full_message=full), signature=signature)
    assert signer == Account.from_key(key).address


def _rsv(key: bytes, message_digest: bytes) -> tuple[int, int, int]:
    raw = PrivateKey(key).sign_recoverable(message_digest, hasher=None)
    return int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:64], "big"), raw[64]


def _signature(r: int, s: int, v: int) -> bytes:
    return r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes((v,))


@settings(max_examples=200, deadline=None)
@given(
    key=keys,
    message_digest=bytes32,
    offset=st.one_of(st.sampled_from([0, 27, 35, 36, 37, 220]), st.integers(0, 254)),
    wrong_parity=st.booleans(),
    high_s=st.booleans(),
)
def test_every_v_and_s_form_is_accepted_or_refused_as_eth_account_does(
    key: bytes, message_digest: bytes, offset: int, wrong_parity: bool, high_s: bool
) -> None:
    r, s, recovery_id = _rsv(key, message_digest)
    if high_s:  # the same signature with s' = n - s (and the other recovery id)
        s, recovery_id = N - s, recovery_id ^ 1
    signature = _signature(r, s, offset + (recovery_id ^ wrong_parity))
    assert _fast_outcome(message_digest, signature) == _slow_outcome(message_digest, signature)


scalars = st.one_of(
    st.sampled_from([0, 1, 2, N - 1, N, N + 1, 2**256 - 1, N // 2, N // 2 + 1]), st.integers(0, 2**256 - 1)
)


@settings(max_examples=200, deadline=None)
@given(message_digest=bytes32, r=scalars, s=scalars, v=st.integers(0, 255))
def test_arbitrary_signatures_are_judged_as_eth_account_does(message_digest: bytes, r: int, s: int, v: int) -> None:
    signature = _signature(r, s, v)
    assert _fast_outcome(message_digest, signature) == _slow_outcome(message_digest, signature)


@settings(max_examples=100, deadline=None)
@given(message_digest=bytes32, signature=st.binary(max_size=100))
def test_garbage_is_judged_as_eth_account_does(message_digest: bytes, signature: bytes) -> None:
    assert _fast_outcome(message_digest, signature) == _slow_outcome(message_digest, signature)


def _grant_signature() -> tuple[bytes, int, int, int]:
    message_digest = eip712.digest(DOMAIN, GRANT)
    r, s, recovery_id = _rsv(KEY, message_digest)
    return message_digest, r, s, recovery_id


@pytest.mark.parametrize("v_offset", [0, 27, 35, 37, 221])
def test_these_vs_are_accepted(v_offset: int) -> None:
    message_digest, r, s, recovery_id = _grant_signature()
    signature = _signature(r, s, v_offset + recovery_id)
    assert eip712.recover(message_digest, signature) == PATIENT == _eth_account_recover(message_digest, signature)


@pytest.mark.parametrize("v", [2, 3, 26, 29, 30, 34])
def test_these_vs_are_refused(v: int) -> None:
    message_digest, r, s, _ = _grant_signature()
    signature = _signature(r, s, v)
    assert _refused_by_eth_account(message_digest, signature)
    with pytest.raises(ValueError, match="v"):
        eip712.recover(message_digest, signature)


def test_a_high_s_signature_is_accepted_like_eth_account_does() -> None:
    """eth-keys (coincurve backend) enforces low s only when verifying, not when recovering."""
    message_digest, r, s, recovery_id = _grant_signature()
    signature = _signature(r, N - s, 27 + (recovery_id ^ 1))
    assert eip712.recover(message_digest, signature) == PATIENT == _eth_account_recover(message_digest, signature)


@pytest.mark.parametrize(("r", "s"), [(0, None), (None, 0), (N, None), (None, N), (2**256 - 1, None)])
def test_r_or_s_zero_or_not_below_n_is_refused(r: int | None, s: int | None) -> None:
    message_digest, r0, s0, recovery_id = _grant_signature()
    signature = _signature(r0 if r is None else r, s0 if s is None else s, 27 + recovery_id)
    assert _refused_by_eth_account(message_digest, signature)
    with pytest.raises(ValueError, match="r and s"):
        eip712.recover(message_digest, signature)


@pytest.mark.parametrize("length", [0, 1, 64, 66, 130])
def test_a_signature_of_another_length_is_refused(length: int) -> None:
    message_digest = eip712.digest(DOMAIN, GRANT)
    signature = bytes(Account.sign_typed_data(KEY, full_message=typed_data(DOMAIN, GRANT)).signature)
    wrong = (signature * 3)[:length]
    assert _refused_by_eth_account(message_digest, wrong)
    with pytest.raises(ValueError, match="65 bytes"):
        eip712.recover(message_digest, wrong)


# ----------------------------------------------------------------- the relay's use


def _relay() -> Relay:
    relay = Relay.__new__(Relay)
    relay.domain = DOMAIN
    return relay


@pytest.mark.parametrize(
    "message", [GRANT, ConsentRevoke(PATIENT, b"\x42" * 32, 4, 2**40), DelegateGrant(PATIENT, CLINIC, 0, 5, 9)]
)
def test_the_relay_recovers_the_signer_and_keeps_its_replay_key(message: SignedMessage) -> None:
    signature = bytes(Account.sign_typed_data(KEY, full_message=typed_data(DOMAIN, message)).signature)
    assert _relay().signer_of(message, signature) == PATIENT
    assert _relay().digest(message) == _reference_digest(DOMAIN, message)


@pytest.mark.parametrize("signature", [b"", b"\x01" * 4097])
def test_the_relay_refuses_an_empty_or_oversized_signature_without_the_chain(signature: bytes) -> None:
    with pytest.raises(SignatureError) as info:
        Relay.check_shape(GRANT, signature, None)
    assert info.value.details["reason"] == "bad-signature"


def test_the_relay_counts_no_signer_for_what_does_not_recover() -> None:
    signature = bytes(Account.sign_typed_data(KEY, full_message=typed_data(DOMAIN, GRANT)).signature)
    assert _relay().signer_of(GRANT, signature[:64]) is None
    assert _relay().signer_of(GRANT, b"\x00" * 32 + signature[32:]) is None
