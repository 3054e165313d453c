"""Typed access to the deployed ConsentLedger contract: views by eth_call, writes by the sender."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ledger_service.chain.build import load_artifact
from ledger_service.chain.rpc import RpcClient
from ledger_service.chain.sender import TransactionSender, reverted_from
from ledger_service.chain.wire import Receipt, RpcError, rpc_error
from ledger_service.codec.abi import ContractCodec, DecodedEvent
from ledger_service.codec.logs import FastLogDecoder
from ledger_service.codec.primitives import ZERO32, checksum_address, hex_to_bytes, parse_log
from ledger_service.domain.codes import ROLES
from ledger_service.domain.consent import EIP712_TYPES, ConsentState, SignedMessage
from ledger_service.errors import (
    ChainError,
    LedgerError,
    NotRecordAuthor,
    PermissionDenied,
    RecordErased,
    RecordNotFound,
    StaleVersion,
    TransactionReverted,
    ValidationError,
)
from ledger_service.transparency.signatures import ERC1271_GAS

CONTRACT_NAME: Final = "ConsentLedger"


# Fixed gas limits for the hot, bounded calls (measured: grant 61-79k, revoke 42k, anchor 79k, logAccess 43k,
# batch anchor 37k), about 3x the most they use. They replace eth_estimateGas, one round trip and a
# simulation per transaction; a call that would revert is then mined with status 0 and the sender's
# ``wait`` replays it with eth_call to raise the same decoded TransactionReverted. The callers run the
# same checks first (signature, nonce, deadline; authorizingConsent; active provider), so that is rare.
# A signed act also has room for a contract party's ERC-1271 check, up to the gas the hub and the auditor
# give that check (ERC1271_GAS): a passkey account's signature costs about 26,000 more by its first passkey,
# and about 180,000 to 200,000 more by the last of 8 (each earlier passkey tried first): the patient's first grant
# by that last passkey took 280,821, its revoke 243,730 (tests/integration/test_passkey_gas.py).
FIXED_GAS: Final = {
    "grantConsentBySig": 250_000 + ERC1271_GAS,
    "revokeConsentBySig": 150_000 + ERC1271_GAS,
    "logAccessBySig": 150_000 + ERC1271_GAS,
    "logEmergencyAccessBySig": 150_000 + ERC1271_GAS,
    "anchorRecordBySig": 250_000 + ERC1271_GAS,
    "amendRecordBySig": 250_000 + ERC1271_GAS,
    "eraseRecordBySig": 150_000 + ERC1271_GAS,
    "revokeDelegateBySig": 150_000 + ERC1271_GAS,
    "anchorDisclosureBatch": 150_000,
}
# The eth_call bound of the other signed acts (sent with eth_estimateGas): delegations, encryption keys.
SIGNED_ACT_GAS: Final = 250_000 + ERC1271_GAS

# The contract function that carries each signed message of docs/architecture.md ("Signed acts").
BY_SIG_FUNCTION: Final = {
    "ConsentGrant": "grantConsentBySig",
    "ConsentRevoke": "revokeConsentBySig",
    "DelegateGrant": "grantDelegateBySig",
    "DelegateRevoke": "revokeDelegateBySig",
    "RecordAnchor": "anchorRecordBySig",
    "RecordAmend": "amendRecordBySig",
    "AccessRequest": "logAccessBySig",
    "EmergencyAccessRequest": "logEmergencyAccessBySig",
    "RecordErase": "eraseRecordBySig",
    "EncryptionKey": "setEncryptionKeyBySig",
}


def struct_tuple(message: SignedMessage) -> tuple[Any, ...]:
    """The message as the ABI tuple of its Solidity struct: its EIP-712 fields in order, addresses checksummed."""
    values = message.message()
    return tuple(
        checksum_address(values[f["name"]]) if f["type"] == "address" else values[f["name"]]
        for f in EIP712_TYPES[type(message).__name__]
    )


_ZERO12: Final = b"\x00" * 12
_CHECK_INPUTS: Final = ("address", "address", "bytes32", "bytes32")


@functools.cache
def _one_word(abi_type: str) -> bool:
    """Whether values of ``abi_type`` are one static ABI word this module encodes and decodes itself."""
    if abi_type in ("address", "bytes32", "bool"):
        return True
    bits = abi_type[4:]
    return abi_type.startswith("uint") and bits.isdigit() and 8 <= int(bits) <= 256 and int(bits) % 8 == 0


def _static_word(abi_type: str, value: Any) -> bytes | None:
    """One ABI word for a static value, or None when eth-abi's own encoder must judge it."""
    if abi_type == "address":
        if isinstance(value, str) and len(value) == 42 and value[:2] in ("0x", "0X"):
            # eth-abi accepts all-lower/upper hex or a correct checksum, and nothing else.
            body = value[2:]
            if body.islower() or body.isupper() or body.isdigit() or checksum_address(value) == value:
                try:
                    return _ZERO12 + bytes.fromhex(body)
                except ValueError:
                    return None
        return None
    if abi_type == "bytes32":
        return bytes(value) if isinstance(value, bytes) and len(value) == 32 else None
    if abi_type == "bool":
        return (b"\x00" * 31 + (b"\x01" if value else b"\x00")) if isinstance(value, bool) else None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2 ** int(abi_type[4:]):
        return value.to_bytes(32, "big")
    return None


def _word_result(abi_type: str, raw: bytes) -> Any:
    """The value of a one-word result, exactly as eth-abi + ``_normalize`` would give it, or None."""
    if abi_type == "bytes32":
        return raw
    value = int.from_bytes(raw, "big")
    if abi_type == "bool":
        return None if value > 1 else bool(value)
    if abi_type == "address":
        return None if value >> 160 else checksum_address("0x" + raw[12:].hex())
    return None if value >> int(abi_type[4:]) else value


def ledger_codec() -> ContractCodec:
    return ContractCodec(load_artifact(CONTRACT_NAME)["abi"])


@dataclass(frozen=True)
class OnChainRecord:
    author: str
    version: int
    category_index: int
    erased: bool
    head: bytes

    @property
    def exists(self) -> bool:
        return self.version > 0


class ConsentLedgerContract:
    """One deployed ledger. Views never need a key; writes go through ``sender``.

    With ``fixed_gas`` (the default) the calls in :data:`FIXED_GAS` are sent with that limit instead of
    an ``eth_estimateGas`` round trip; a revert still surfaces as the decoded TransactionReverted.
    """

    def __init__(
        self,
        rpc: RpcClient,
        address: str,
        codec: ContractCodec,
        sender: TransactionSender | None = None,
        *,
        fixed_gas: bool = True,
    ) -> None:
        self.rpc = rpc
        self.address = checksum_address(address)
        self.codec = codec
        # The ledger's logs decoded by slicing (codec/logs.py), eth-abi only for what that does not handle.
        self.decode_log = FastLogDecoder(codec, parse_log).decode_log
        self.sender = sender
        self.fixed_gas = fixed_gas

    # ------------------------------------------------------------- plumbing

    def encode(self, name: str, *args: Any) -> bytes:
        """Calldata of ``name(args)``: static arguments by hand (the common case), the rest by eth-abi."""
        fn = self.codec.functions[name]
        if len(args) == len(fn.input_types) and all(_one_word(t) for t in fn.input_types):
            words = [_static_word(t, v) for t, v in zip(fn.input_types, args, strict=True)]
            if all(w is not None for w in words):
                return fn.selector + b"".join(w for w in words if w is not None)
        return self.codec.encode_call(name, *args)

    def decode(self, name: str, raw: bytes) -> tuple[Any, ...]:
        fn = self.codec.functions[name]
        if len(raw) == 32 and len(fn.output_types) == 1 and _one_word(fn.output_types[0]):
            value = _word_result(fn.output_types[0], raw)
            if value is not None:
                return (value,)
        return self.codec.decode_result(name, raw)

    def view(self, name: str, *args: Any, block: int | str = "latest") -> tuple[Any, ...]:
        data = self.encode(name, *args)
        try:
            raw = self.rpc.call(self.address, data, block=block)
        except RpcError as exc:
            raise reverted_from(exc, self.codec, name) from exc
        return self.decode(name, raw)

    def views(
        self, calls: Sequence[tuple[str, tuple[Any, ...]]], *, block: int | str = "latest", with_block: bool = False
    ) -> tuple[list[tuple[Any, ...]], dict[str, Any] | None]:
        """Several views (and, with ``with_block``, the header of ``block``) in one batched round trip."""
        tag = hex(block) if isinstance(block, int) else block
        requests: list[tuple[str, list[Any]]] = [
            ("eth_call", [{"to": self.address, "data": "0x" + self.encode(name, *args).hex()}, tag])
            for name, args in calls
        ]
        if with_block:
            requests.append(("eth_getBlockByNumber", [tag, False]))
        responses = self.rpc.batch_responses(requests)
        results = []
        for (name, _args), response in zip(calls, responses, strict=False):
            error = response.get("error")
            if error:
                raise reverted_from(rpc_error("eth_call", error), self.codec, name)
            results.append(self.decode(name, hex_to_bytes(response.get("result"))))
        header = None
        if with_block:
            last = responses[-1]
            if last.get("error"):
                raise rpc_error("eth_getBlockByNumber", last["error"])
            header = last.get("result")
            if header is None:
                raise ChainError(f"block {block} not found")
        return results, header

    def _transact(
        self, name: str, *args: Any, gas: int | None = None, on_sent: Callable[[bytes], None] | None = None
    ) -> Receipt:
        if self.sender is None:
            raise RuntimeError("this ledger handle has no transaction sender")
        data = self.encode(name, *args)
        if gas is None and self.fixed_gas:
            gas = FIXED_GAS.get(name)
        return self.sender.transact(self.address, data, action=name, gas=gas, on_sent=on_sent)

    def events(self, receipt: Receipt) -> list[DecodedEvent]:
        decoded = []
        for log in receipt.logs:
            if checksum_address(log["address"]) != self.address:
                continue
            event = self.decode_log(log)
            if event is not None:
                decoded.append(event)
        return decoded

    def event(self, receipt: Receipt, name: str) -> DecodedEvent:
        for event in self.events(receipt):
            if event.name == name:
                return event
        raise LookupError(f"{name} not emitted in 0x{receipt.tx_hash.hex()}")

    # ------------------------------------------------------------- transactions sent earlier

    @property
    def has_sender(self) -> bool:
        """Whether this handle can send (and so wait for) transactions."""
        return self.sender is not None

    def wait_for(self, tx_hash: bytes, *, action: str) -> Receipt:
        """The receipt of a transaction this ledger's sender sent earlier (traced before a crash)."""
        if self.sender is None:
            raise RuntimeError("this ledger handle has no transaction sender")
        return self.sender.wait(tx_hash, action=action)

    def receipt(self, tx_hash: bytes) -> Receipt | None:
        """The receipt of a transaction, or None while it is not mined."""
        return self.rpc.receipt(tx_hash)

    # ------------------------------------------------------------- blocks and logs

    def block_number(self) -> int:
        return self.rpc.block_number()

    def block_timestamp(self, block: int | str = "latest") -> int:
        return int(self.rpc.get_block(block)["timestamp"], 16)

    def events_between(self, name: str, from_block: int, to_block: int) -> list[DecodedEvent]:
        """The events ``name`` this contract emitted in the block range (inclusive), decoded."""
        decoded = []
        for raw in self.rpc.get_logs(self.address, from_block, to_block, [self.codec.topic(name)]):
            event = self.decode_log(raw)
            if event is not None:
                decoded.append(event)
        return decoded

    def anchor_event(self, record_id: str, version: int) -> DecodedEvent | None:
        """The ``RecordAnchored`` event of a record's version, if it is on chain (a crashed upload's)."""
        logs = self.rpc.get_logs(
            self.address, 0, self.rpc.block_number(), [self.codec.topic("RecordAnchored"), record_id]
        )
        for lg in logs:
            event = self.decode_log(lg)
            if event is not None and int(event.args["version"]) == version:
                return event
        return None

    # ------------------------------------------------------------- views

    def nonce_used(self, signer: str, nonce: int, *, block: int | str = "latest") -> bool:
        return bool(self.view("nonceUsed", checksum_address(signer), nonce, block=block)[0])

    def fresh_nonce(self, signer: str, *, block: int | str = "latest") -> int:
        """A nonce above every one ``signer`` has used: one past the highest set bit of its nonce bitmap (read up
        to its first empty word).

        Not the lowest clear bit: a signer counting up from a floor (node/signing.py, ``MessageNonces``) would
        then run into the nonces used above a gap that a refused message left. Counting up from here keeps a
        signer's nonces in few bitmap words (cheaper writes) and collides with nothing on chain."""
        signer = checksum_address(signer)
        word, fresh = 0, 0
        while True:
            bitmap = int(self.view("nonceBitmap", signer, word, block=block)[0])
            if bitmap == 0:
                return fresh
            fresh = word * 256 + bitmap.bit_length()
            word += 1

    def encryption_key_of(self, account: str) -> bytes:
        return bytes(self.view("encryptionKeyOf", checksum_address(account))[0])

    def _check(self, name: str, patient: str, grantee: str, record_id: bytes, purpose: bytes, block: int | str) -> Any:
        """The one result of ``name(address patient, address grantee, bytes32 recordId, bytes32 purpose)``, the
        per-request consent check: its four static words are joined here (checksummed addresses are plain hex),
        what :meth:`view` would send, without the generic per-argument encoder; anything else goes through it."""
        patient = checksum_address(patient)
        grantee = checksum_address(grantee)
        fn = self.codec.functions[name]
        if not (
            fn.input_types == _CHECK_INPUTS
            and isinstance(record_id, bytes)
            and len(record_id) == 32
            and isinstance(purpose, bytes)
            and len(purpose) == 32
        ):
            return self.view(name, patient, grantee, record_id, purpose, block=block)[0]
        data = b"".join(
            (fn.selector, _ZERO12, bytes.fromhex(patient[2:]), _ZERO12, bytes.fromhex(grantee[2:]), record_id, purpose)
        )
        try:
            raw = self.rpc.call(self.address, data, block=block)
        except RpcError as exc:
            raise reverted_from(exc, self.codec, name) from exc
        return self.decode(name, raw)[0]

    def is_authorized(
        self, patient: str, grantee: str, record_id: bytes, purpose: bytes, *, block: int | str = "latest"
    ) -> bool:
        return bool(self._check("isAuthorized", patient, grantee, record_id, purpose, block))

    def authorizing_consent(
        self, patient: str, grantee: str, record_id: bytes, purpose: bytes, *, block: int | str = "latest"
    ) -> bytes | None:
        found = self._check("authorizingConsent", patient, grantee, record_id, purpose, block)
        return None if found == ZERO32 else bytes(found)

    def consent(self, consent_id: bytes) -> tuple[str, int, int, bool]:
        ((patient, valid_from, valid_until, revoked, _by_patient),) = self.view("consent", consent_id)
        return patient, int(valid_from), int(valid_until), bool(revoked)

    def record(self, patient: str, record_id: bytes, *, block: int | str = "latest") -> OnChainRecord:
        (author, version, category_index, erased), head = self.view(
            "record", checksum_address(patient), record_id, block=block
        )
        return OnChainRecord(checksum_address(author), int(version), int(category_index), bool(erased), bytes(head))

    def has_role(self, role: bytes, account: str, *, block: int | str = "latest") -> bool:
        return bool(self.view("hasRole", role, checksum_address(account), block=block)[0])

    def is_active_provider(self, account: str, *, block: int | str = "latest") -> bool:
        return bool(self.view("isActiveProvider", checksum_address(account), block=block)[0])

    def provider_name(self, account: str) -> str:
        return str(self.view("providerName", checksum_address(account))[0])

    def delegation(self, patient: str, delegate: str) -> tuple[int, bool]:
        valid_until, live = self.view("delegation", checksum_address(patient), checksum_address(delegate))
        return int(valid_until), bool(live)

    def category_count(self) -> int:
        return int(self.view("categoryCount")[0])

    def categories(self) -> list[bytes]:
        count = int(self.view("categoryCount")[0])
        return [bytes(self.view("categoryId", i)[0]) for i in range(1, count + 1)]

    def domain_separator(self) -> bytes:
        return bytes(self.view("DOMAIN_SEPARATOR")[0])

    def roles_of(self, account: str) -> list[str]:
        """Role names held by ``account`` now (the latest block), read in one batched round trip."""
        account = checksum_address(account)
        calls: list[tuple[str, tuple[Any, ...]]] = [("hasRole", (role, account)) for role in ROLES.values()]
        calls.append(("isSuspended", (account,)))
        results, _ = self.views(calls)
        held = [name for name, (has,) in zip(ROLES, results[:-1], strict=True) if has]
        if results[-1][0]:
            held.append("suspended")
        return held

    # ------------------------------------------------------------- signed acts

    def send_signed(
        self, message: SignedMessage, signature: bytes, *, on_sent: Callable[[bytes], None] | None = None
    ) -> Receipt:
        """Relay one signed message to the function that verifies it; ``on_sent`` gets the transaction's hash
        before the wait, for a caller that traces it first."""
        name = BY_SIG_FUNCTION[type(message).__name__]
        return self._transact(name, struct_tuple(message), signature, on_sent=on_sent)

    def grant_direct(self, state: ConsentState) -> Receipt:
        return self._transact(
            "grantConsent",
            checksum_address(state.patient),
            checksum_address(state.grantee),
            state.scope,
            state.purpose,
            state.valid_from,
            state.valid_until,
        )

    def revoke_direct(self, consent_id: bytes) -> Receipt:
        return self._transact("revokeConsent", consent_id)

    # ------------------------------------------------------------- disclosures

    def disclosure_event(self, receipt: Receipt) -> tuple[DecodedEvent, int]:
        """The disclosure event (``AccessLogged`` or ``EmergencyAccessLogged``) a receipt carries, with its
        log index."""
        topics = (self.codec.topic("AccessLogged"), self.codec.topic("EmergencyAccessLogged"))
        log = next(lg for lg in receipt.logs if lg["topics"] and lg["topics"][0] in topics)
        event = self.decode_log(log)
        assert event is not None
        return event, int(log["logIndex"])

    def anchor_disclosure_batch(self, root: bytes, from_index: int, to_index: int) -> Receipt:
        return self._transact("anchorDisclosureBatch", root, from_index, to_index)

    # ------------------------------------------------------------- administration

    def onboard_provider(self, provider: str, name: str) -> Receipt:
        return self._transact("onboardProvider", checksum_address(provider), name)

    def grant_role(self, role: bytes, account: str) -> Receipt:
        return self._transact("grantRole", role, checksum_address(account))

    def revoke_role(self, role: bytes, account: str) -> Receipt:
        return self._transact("revokeRole", role, checksum_address(account))

    def suspend_provider(self, provider: str) -> Receipt:
        return self._transact("suspendProvider", checksum_address(provider))

    def reinstate_provider(self, provider: str) -> Receipt:
        return self._transact("reinstateProvider", checksum_address(provider))

    def register_category(self, code: str) -> Receipt:
        return self._transact("registerCategory", code)


def record_error(exc: TransactionReverted) -> LedgerError:
    """Map the contract's custom errors to the domain's record errors."""
    name = exc.error_name
    if name == "NotRecordAuthor":
        return NotRecordAuthor(str(exc))
    if name == "StaleVersion":
        return StaleVersion("the record was amended meanwhile; read it again and retry")
    if name == "RecordIsErased":
        return RecordErased(str(exc))
    if name in ("NotActiveProvider", "NotEmergencyProvider"):
        return PermissionDenied(str(exc))
    if name == "UnknownCategory":
        return ValidationError(str(exc), field="category")
    if name == "UnknownRecord":
        return RecordNotFound(str(exc))
    return exc
