"""The passkey accounts' contracts: ``PatientAccountFactory`` and the ``PatientAccount`` clones it deploys
(docs/architecture.md, "Passkey accounts"). Views by ``eth_call``; writes by the relayer's sender, each run
first as a gas-bounded ``eth_call`` and then sent with that same fixed gas limit.

Also the ERC-1271 question any contract account is asked at sign-in (:class:`ContractSignatures`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from ledger_service.chain.build import load_artifact
from ledger_service.chain.rpc import RpcClient
from ledger_service.chain.sender import TransactionSender, reverted_from
from ledger_service.chain.wire import Receipt, RpcError
from ledger_service.codec.abi import ContractCodec
from ledger_service.codec.primitives import checksum_address
from ledger_service.domain.passkeys import Passkey, PasskeyMessage
from ledger_service.errors import TransactionReverted
from ledger_service.transparency.signatures import ERC1271_GAS, erc1271_accepted, erc1271_call

FACTORY_NAME: Final = "PatientAccountFactory"
ACCOUNT_NAME: Final = "PatientAccount"

# Fixed gas limits of the account transactions the relayer sends, each about twice the most it can use
# (contracts/GAS.md, "Passkey accounts"; the worst cases measured by tests/integration/test_passkey_gas.py):
# createAccount 109,445; the eighth passkey added by the seventh, each earlier one tried first, about 297,000
# (280,212 with the nonce word in use).
ACCOUNT_FIXED_GAS: Final = {"createAccount": 250_000, "addPasskey": 600_000, "removePasskey": 600_000}

# The code of an OpenZeppelin ERC-1167 clone with immutable arguments (Clones.cloneWithImmutableArgs): the
# 45-byte proxy around its implementation's address, then the arguments, here abi.encode(qx, qy).
_CLONE_PREFIX: Final = bytes.fromhex("363d3d373d3d3d363d73")
_CLONE_SUFFIX: Final = bytes.fromhex("5af43d82803e903d91602b57fd5bf3")
_CLONE_LENGTH: Final = len(_CLONE_PREFIX) + 20 + len(_CLONE_SUFFIX) + 64


def accounts_codec() -> ContractCodec:
    """One codec for the factory and the account: their functions, events and custom errors."""
    return ContractCodec([*load_artifact(FACTORY_NAME)["abi"], *load_artifact(ACCOUNT_NAME)["abi"]])


class PatientAccounts:
    """This deployment's factory and its accounts. ``sender`` (the relayer's) is needed for the writes only."""

    def __init__(self, rpc: RpcClient, factory: str, sender: TransactionSender | None = None) -> None:
        self.rpc = rpc
        self.factory = checksum_address(factory)
        self.sender = sender
        self.codec = accounts_codec()
        self._implementation: str | None = None

    # ------------------------------------------------------------- views

    def _view(self, to: str, name: str, *args: Any) -> tuple[Any, ...]:
        data = self.codec.encode_call(name, *args)
        try:
            raw = self.rpc.call(to, data)
        except RpcError as exc:
            raise reverted_from(exc, self.codec, name) from exc
        return self.codec.decode_result(name, raw)

    @property
    def implementation(self) -> str:
        """The one implementation every account of the factory delegates to (immutable: read once)."""
        if self._implementation is None:
            self._implementation = checksum_address(self._view(self.factory, "implementation")[0])
        return self._implementation

    def account_of(self, key: Passkey) -> str:
        """The address of the account whose first passkey is ``key``, deployed or not."""
        return checksum_address(self._view(self.factory, "accountOf", key.x, key.y)[0])

    def has_code(self, address: str) -> bool:
        return bool(self.rpc.code_at(checksum_address(address)))

    def first_passkey(self, address: str) -> Passkey | None:
        """The first passkey of the account deployed at ``address`` if it is one of this factory's accounts;
        None for anything else (no code, other code, or a clone this factory did not deploy there)."""
        code = self.rpc.code_at(checksum_address(address))
        if len(code) != _CLONE_LENGTH or not code.startswith(_CLONE_PREFIX):
            return None
        proxy_end = len(_CLONE_PREFIX) + 20 + len(_CLONE_SUFFIX)
        if code[len(_CLONE_PREFIX) + 20 : proxy_end] != _CLONE_SUFFIX:
            return None
        if checksum_address(code[len(_CLONE_PREFIX) : len(_CLONE_PREFIX) + 20]) != self.implementation:
            return None
        key = Passkey(code[proxy_end : proxy_end + 32], code[proxy_end + 32 :])
        # The CREATE2 address binds the factory, the salt (the key) and the code: only the factory put it there.
        return key if self.account_of(key) == checksum_address(address) else None

    def passkeys(self, account: str) -> list[Passkey]:
        """The account's passkeys now, the first one first while it is one of them (one batched round trip)."""
        account = checksum_address(account)
        (count,) = self._view(account, "passkeyCount")
        calls: list[tuple[str, list[Any]]] = [
            ("eth_call", [{"to": account, "data": "0x" + self.codec.encode_call("passkeyAt", i).hex()}, "latest"])
            for i in range(int(count))
        ]
        keys = []
        for raw in self.rpc.batch(calls) if calls else []:
            qx, qy = self.codec.decode_result("passkeyAt", bytes.fromhex(str(raw)[2:]))
            keys.append(Passkey(bytes(qx), bytes(qy)))
        return keys

    def nonce_used(self, account: str, nonce: int) -> bool:
        return bool(self._view(checksum_address(account), "nonceUsed", nonce)[0])

    # ------------------------------------------------------------- calls the relayer sends

    def create_call(self, key: Passkey) -> bytes:
        """``createAccount(qx, qy)``'s calldata."""
        return self.codec.encode_call("createAccount", key.x, key.y)

    def created_key(self, calldata: bytes) -> Passkey | None:
        """The key of a ``createAccount(qx, qy)`` calldata, exactly that call and nothing more; else None."""
        fn = self.codec.functions["createAccount"]
        if len(calldata) != 4 + 64 or calldata[:4] != fn.selector:
            return None
        return Passkey(calldata[4:36], calldata[36:68])

    def passkey_call(self, message: PasskeyMessage, signature: bytes) -> tuple[str, bytes]:
        """(function name, calldata) of ``addPasskey`` / ``removePasskey`` carrying ``message``."""
        name = "addPasskey" if type(message).__name__ == "AddPasskey" else "removePasskey"
        return name, self.codec.encode_call(name, message.qx, message.qy, message.nonce, message.deadline, signature)

    def simulate(self, to: str, name: str, data: bytes) -> None:
        """The call as the relayer would send it, by ``eth_call`` with its fixed gas: raises the decoded
        TransactionReverted if it would revert (an RpcError if the chain did not answer)."""
        assert self.sender is not None, "simulating a relayed call needs the relayer's sender"
        try:
            self.rpc.call(to, data, sender=self.sender.address, gas=ACCOUNT_FIXED_GAS[name])
        except RpcError as exc:
            reverted = reverted_from(exc, self.codec, name)
            if reverted.error_name is None and exc.revert_data is None:
                raise
            raise reverted from exc

    def send(self, to: str, name: str, data: bytes, *, on_sent: Callable[[bytes], None] | None = None) -> Receipt:
        """Send the call with its fixed gas and wait for the receipt; a revert is decoded with these contracts'
        errors (the sender knows only the ledger's)."""
        if self.sender is None:
            raise RuntimeError("this accounts handle has no transaction sender")
        try:
            return self.sender.transact(to, data, action=name, gas=ACCOUNT_FIXED_GAS[name], on_sent=on_sent)
        except TransactionReverted as exc:
            if exc.error_name is not None and exc.error_name in {e.name for e in self.codec.errors.values()}:
                raise
            try:
                self.simulate(to, name, data)  # the state after it: why it failed, in these contracts' words
            except TransactionReverted as explained:
                raise explained from exc
            raise

    def wait_for(self, tx_hash: bytes, *, action: str) -> Receipt:
        if self.sender is None:
            raise RuntimeError("this accounts handle has no transaction sender")
        return self.sender.wait(tx_hash, action=action)

    def created_account(self, receipt: Receipt) -> str | None:
        """The account an ``AccountCreated`` event of this factory in ``receipt`` announces, if any."""
        topic = self.codec.topic("AccountCreated")
        for log in receipt.logs:
            if checksum_address(log["address"]) == self.factory and log["topics"] and log["topics"][0] == topic:
                event = self.codec.decode_log(log)
                if event is not None:
                    return checksum_address(event.args["account"])
        return None


class ContractSignatures:
    """ERC-1271 for any contract account, through an ``eth_call`` bounded by ``ERC1271_GAS``: a contract cannot
    make the question costly, and an account that reverts or answers anything but the magic value refuses."""

    def __init__(self, rpc: RpcClient) -> None:
        self.rpc = rpc

    def has_code(self, address: str) -> bool:
        return bool(self.rpc.code_at(checksum_address(address)))

    def is_valid_signature(self, account: str, digest: bytes, signature: bytes) -> bool:
        try:
            result = self.rpc.call(checksum_address(account), erc1271_call(digest, signature), gas=ERC1271_GAS)
        except RpcError:
            return False  # reverted or out of gas: not accepted (an unreachable chain is ChainUnavailable)
        return erc1271_accepted(result)
