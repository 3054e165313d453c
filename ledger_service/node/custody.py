"""The node's side of threshold key custody (docs/architecture.md, "Key custody").

Upload: a version's fresh data key is split t-of-n (Shamir over GF(2^8)); share ``i`` is sealed (HPKE) to
custodian ``i``'s published key and deposited there, signed by the version's author, before the anchor is sent.
Every custodian must take its share: a version anchored with fewer would be readable by fewer than planned.
Read: after the access is logged on chain, the node asks every custodian at once with the disclosure as
evidence; each share comes back sealed to the accessor's encryption key, which only this node holds. It asks t
custodians first and the others only if one of those fails or is slow; the first t shares that open are
combined. Fewer than t answering is :class:`CustodyUnavailable` (503): nothing is decrypted.
The node keeps no data key at rest: it holds its providers' signing and encryption keys, nothing else.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Protocol

from ledger_service.codec import eip712
from ledger_service.codec.primitives import checksum_address
from ledger_service.crypto.envelope import DataKey, RecordBinding
from ledger_service.crypto.key_file import X25519KeyFile
from ledger_service.crypto.key_shares import ShareSlot, deposit_digest, seal_share
from ledger_service.crypto.shamir import combine, split
from ledger_service.domain.consent import Eip712Domain, EncryptionKey
from ledger_service.errors import (
    CustodyUnavailable,
    DecryptionError,
    KeyCustodyError,
    KeyDestroyed,
    LedgerError,
    RecordErased,
    ValidationError,
)
from ledger_service.node.signing import Deadlines, MessageNonces, ProviderKeys, relayed_signing_again_once
from ledger_service.records.relaying import Relayer

__all__ = ["CustodianClient", "CustodianInfo", "EncryptionKeys", "ThresholdCustody"]

# Seconds a read waits for its first ``threshold`` custodians before it asks the others too.
HEDGE_AFTER = 1.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CustodianInfo:
    index: int
    public_key: bytes
    threshold: int
    total: int


class CustodianClient(Protocol):
    """One custodian, over HTTP (:mod:`ledger_service.node.custodian_client`) or in this process (``up``).
    Refusals are LedgerErrors: :class:`RecordErased` for an erased record, others as the custodian said."""

    name: str

    def info(self) -> CustodianInfo: ...

    def deposit(
        self,
        *,
        patient: str,
        author: str,
        record_id: bytes,
        version: int,
        recipient: bytes,
        sealed: bytes,
        signature: bytes,
    ) -> None: ...

    def release(
        self,
        *,
        record_id: bytes,
        version: int,
        accessor: str,
        disclosure_tx: bytes | None = None,
        receipt: dict[str, Any] | None = None,
    ) -> bytes: ...


class EncryptionKeys:
    """Each provider's X25519 encryption key, in a key file of the node, and registered on chain: the first
    time a provider needs it, the node signs an ``EncryptionKey`` message and relays it if the chain holds
    another key (or none)."""

    def __init__(
        self,
        files: Mapping[str, X25519KeyFile],
        *,
        registered_key: Callable[[str], bytes],
        relayer: Relayer,
        keys: ProviderKeys,
        nonces: MessageNonces,
        deadlines: Deadlines,
        domain: Eip712Domain,
    ) -> None:
        self.files = {checksum_address(a): f for a, f in files.items()}
        self._registered_key = registered_key
        self._relayer = relayer
        self._keys = keys
        self._nonces = nonces
        self._deadlines = deadlines
        self._domain = domain
        self._checked: set[str] = set()
        self._lock = threading.Lock()

    def file_of(self, provider: str) -> X25519KeyFile:
        key_file = self.files.get(checksum_address(provider))
        if key_file is None:
            raise KeyCustodyError(f"this node holds no encryption key for {provider}")
        return key_file

    def ensure_registered(self, provider: str) -> X25519KeyFile:
        provider = checksum_address(provider)
        key_file = self.file_of(provider)
        with self._lock:
            if provider in self._checked:
                return key_file
            public = key_file.public_key
            if self._registered_key(provider) != public:
                signer = self._keys.signer_for(provider)

                def relay_signed(resync: bool) -> None:
                    nonce = self._nonces.allocate(provider, resync=resync)
                    message = EncryptionKey(provider, public, nonce, self._deadlines.next(fresh=True))
                    self._relayer.relay(message, signer.sign_digest(eip712.digest(self._domain, message)))

                relayed_signing_again_once(relay_signed)  # another node may have used the nonce meanwhile
                log.info("registered the encryption key 0x%s of %s on the ledger", public.hex(), provider)
            self._checked.add(provider)
        return key_file


class ThresholdCustody:
    def __init__(
        self,
        custodians: Sequence[CustodianClient],
        *,
        threshold: int,
        domain: Eip712Domain,
        keys: ProviderKeys,
        encryption: EncryptionKeys,
    ) -> None:
        if not 2 <= threshold <= len(custodians):
            raise KeyCustodyError(f"a {threshold}-of-{len(custodians)} custody is not possible")
        self.custodians = list(custodians)
        self.threshold = threshold
        self.domain = domain
        self.keys = keys
        self.encryption = encryption
        separator = eip712.domain_separator(domain)
        assert separator is not None
        self._separator = separator
        self._infos: dict[int, CustodianInfo] = {}
        self._turn = 0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max(4, 2 * len(custodians)), thread_name_prefix="custody")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    @property
    def total(self) -> int:
        return len(self.custodians)

    def _info(self, position: int, *, refresh: bool = False) -> CustodianInfo:
        info = self._infos.get(position)
        if info is None or refresh:
            info = self.custodians[position].info()
            if not 1 <= info.index <= self.total or (info.threshold, info.total) != (self.threshold, self.total):
                raise KeyCustodyError(
                    f"custodian {self.custodians[position].name} is custodian {info.index} of a "
                    f"{info.threshold}-of-{info.total} custody; this node expects {self.threshold}-of-{self.total}"
                )
            self._infos[position] = info
        return info

    def _slot(self, binding: RecordBinding, index: int) -> ShareSlot:
        return ShareSlot(
            self.domain.chain_id, self.domain.verifying_contract, binding.record_id, binding.version, index
        )

    # ------------------------------------------------------------- upload

    def begin_protect(self, binding: RecordBinding, data_key: DataKey, *, author: str) -> Callable[[], None]:
        """Start depositing one share of ``data_key`` with every custodian and return what waits for the
        deposits (and raises unless every custodian took its share): an upload encrypts and stores its blob
        meanwhile."""
        shares = split(data_key.to_bytes(), self.threshold, self.total)
        signer = self.keys.signer_for(author)
        patient = checksum_address(binding.patient)

        def deposit(position: int) -> None:
            for attempt in (0, 1):
                info = self._info(position, refresh=attempt == 1)  # a rotated key: look again, once
                slot = self._slot(binding, info.index)
                sealed = seal_share(shares[info.index - 1], slot, info.public_key)
                digest = deposit_digest(self._separator, slot, patient=patient, author=author, sealed=sealed)
                try:
                    self.custodians[position].deposit(
                        patient=patient,
                        author=author,
                        record_id=binding.record_id,
                        version=binding.version,
                        recipient=info.public_key,
                        sealed=sealed,
                        signature=signer.sign_digest(digest),
                    )
                    return
                except (KeyCustodyError, ValidationError):  # e.g. sealed to a key the custodian has retired
                    if attempt == 1:
                        raise

        futures = {self._pool.submit(deposit, p): p for p in range(self.total)}

        def finish() -> None:
            failed = []
            for future, position in futures.items():
                try:
                    future.result()
                except LedgerError as exc:
                    failed.append(f"{self.custodians[position].name}: {exc}")
            if failed:
                raise CustodyUnavailable(
                    f"the record was not stored: {len(failed)} of {self.total} key custodians did not take their "
                    f"share ({'; '.join(failed)})"
                )

        return finish

    # ------------------------------------------------------------- read

    def recover(
        self,
        binding: RecordBinding,
        *,
        accessor: str,
        disclosure_tx: bytes | None = None,
        receipt: dict[str, Any] | None = None,
    ) -> DataKey:
        """The data key, from the first ``threshold`` shares released against the disclosure and sealed to
        ``accessor``'s encryption key."""
        return self.begin_recover(binding, accessor=accessor, disclosure_tx=disclosure_tx, receipt=receipt)()

    def begin_recover(
        self,
        binding: RecordBinding,
        *,
        accessor: str,
        disclosure_tx: bytes | None = None,
        receipt: dict[str, Any] | None = None,
    ) -> Callable[[], DataKey]:
        """Ask the custodians now and return what waits for the shares and combines them (:meth:`recover`):
        a read asks while it writes its delivery row."""
        key_file = self.encryption.ensure_registered(accessor)

        def released(position: int) -> bytes:
            info = self._info(position)
            sealed = self.custodians[position].release(
                record_id=binding.record_id,
                version=binding.version,
                accessor=accessor,
                disclosure_tx=disclosure_tx,
                receipt=receipt,
            )
            return key_file.open_share(sealed, self._slot(binding, info.index))

        # Ask ``threshold`` custodians first (a different first one each read, to spread the load); ask the
        # others when one fails, or when the first ones have not all answered within HEDGE_AFTER seconds.
        with self._lock:
            self._turn = (self._turn + 1) % self.total
            start = self._turn
        order = [(start + i) % self.total for i in range(self.total)]
        pending: set[Future[bytes]] = {self._pool.submit(released, p) for p in order[: self.threshold]}
        waiting = order[self.threshold :]

        def finish() -> DataKey:
            nonlocal pending, waiting
            shares: list[bytes] = []
            problems: list[str] = []
            erased: LedgerError | None = None
            while pending and len(shares) < self.threshold:
                done, pending = wait(pending, timeout=HEDGE_AFTER if waiting else None, return_when=FIRST_COMPLETED)
                if not done:  # slow: hedge with every custodian not asked yet
                    pending |= {self._pool.submit(released, p) for p in waiting}
                    waiting = []
                    continue
                for future in done:
                    try:
                        shares.append(future.result())
                    except (RecordErased, KeyDestroyed) as exc:
                        erased = exc
                    except (LedgerError, DecryptionError) as exc:
                        problems.append(str(exc))
                    if waiting and len(shares) + len(pending) < self.threshold:
                        pending.add(self._pool.submit(released, waiting.pop(0)))
            for future in pending:
                future.cancel()
            if len(shares) >= self.threshold:
                return DataKey(combine(shares[: self.threshold]))
            if erased is not None:
                raise KeyDestroyed(f"the keys of record 0x{binding.record_id.hex()} were destroyed: {erased}")
            raise CustodyUnavailable(
                f"only {len(shares)} of the {self.threshold} key shares needed came back; nothing was decrypted "
                f"({'; '.join(problems)})"
            )

        return finish
