"""The composition root: the one place where settings choose and build the adapters.

Every entry point (the API server, ``consent-ledger up``/``deploy``, the admin and audit commands) gets its RPC
client, blob store, database, key custody and transaction senders from the factories here
(docs/architecture.md).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Final

from ledger_service.blobs import BlobStore, EmbeddedBlobStore, KuboBlobStore
from ledger_service.chain.deploy import DEMO_PROVIDERS, Deployment
from ledger_service.chain.indexer import EventIndexer
from ledger_service.chain.ledger import ConsentLedgerContract, ledger_codec
from ledger_service.chain.rpc import RpcClient
from ledger_service.chain.sender import TransactionSender
from ledger_service.chain.signers import ProviderSigners
from ledger_service.crypto import KeyCustody
from ledger_service.custodian import LocalKeyFile
from ledger_service.db.database import Database
from ledger_service.db.idempotency import IdempotencyStore
from ledger_service.db.indexer_store import DbIndexStore
from ledger_service.db.nonces import DbNonceLedger
from ledger_service.domain.consent import Eip712Domain
from ledger_service.errors import ConfigurationError, LedgerError
from ledger_service.hub.audit import AuditService
from ledger_service.hub.auth import AuthService, load_or_create_secret
from ledger_service.hub.batched_disclosure import BatchedDisclosureStrategy
from ledger_service.hub.batching import DisclosureBatcher, DisclosureLog
from ledger_service.hub.consents import ConsentService
from ledger_service.hub.directory import Directory
from ledger_service.hub.erasure import ErasureService
from ledger_service.hub.records import RecordLookups
from ledger_service.node.fhir import FHIR_INLINE_BELOW, check_fhir
from ledger_service.node.per_read_disclosure import PerReadDisclosureStrategy
from ledger_service.node.reads import ReadService
from ledger_service.node.uploads import UploadService
from ledger_service.records.disclosure import DisclosureStrategy
from ledger_service.records.locks import RecordLocks
from ledger_service.settings import ANVIL_DEV_KEYS, Settings
from ledger_service.workers import ParseWorkers

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    deployment: Deployment
    rpc: RpcClient
    ledger: ConsentLedgerContract
    db: Database
    blobs: BlobStore
    custody: KeyCustody
    providers: ProviderSigners
    uploads: UploadService
    reads: ReadService
    erasure: ErasureService
    records: RecordLookups
    per_read_disclosures: PerReadDisclosureStrategy
    indexer: EventIndexer
    consents: ConsentService
    auth: AuthService
    directory: Directory
    domain: Eip712Domain
    categories: Callable[[], dict[str, bytes]]
    audit: AuditService
    disclosure_log: DisclosureLog
    batcher: DisclosureBatcher
    idempotency: IdempotencyStore
    parse_workers: ParseWorkers
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start_background(self) -> None:
        """Follow the chain's events in a daemon thread; in batched mode (or with entries a former batched
        run left unanchored) also anchor the disclosure log's roots in another."""
        thread = threading.Thread(target=self.indexer.run, args=(self._stop,), name="event-indexer", daemon=True)
        thread.start()
        self._threads.append(thread)
        recovery = threading.Thread(target=self._recover_periodically, name="recovery", daemon=True)
        recovery.start()
        self._threads.append(recovery)
        if self.settings.disclosure_mode == "batched" or self.disclosure_log.size() > 0:
            batcher = threading.Thread(
                target=self.batcher.run, args=(self._stop,), name="disclosure-batcher", daemon=True
            )
            batcher.start()
            self._threads.append(batcher)

    def _recover_periodically(self, interval: float = 30.0) -> None:
        """Resolve work a crashed process (this one earlier, or another replica) left half-done."""
        stale_after = 2 * self.settings.receipt_timeout
        while not self._stop.wait(interval):
            try:
                self.uploads.recover_pending(stale_after=stale_after)
                self.per_read_disclosures.finish_traced_disclosures()
            except LedgerError as exc:
                log.warning("recovery: %s", exc)

    def chain_time(self) -> int:
        return int(self.rpc.get_block("latest")["timestamp"], 16)

    def close(self) -> None:
        self._stop.set()
        self.batcher.notify()
        for thread in self._threads:
            # The batcher anchors what is left before it stops: give it one transaction's time.
            timeout = self.settings.receipt_timeout + 5 if thread.name == "disclosure-batcher" else 5
            thread.join(timeout=timeout)
            if thread.is_alive():
                log.warning("background thread %s did not stop in %.0f s", thread.name, timeout)
        self.parse_workers.close()
        self.db.dispose()


# The auditor's node answers large batched log ranges: more time than a request of the service needs.
AUDITOR_RPC_TIMEOUT: Final = 30.0


def node_url(settings: Settings, deployment: Deployment | None = None) -> str:
    """The chain node to use: the configured one; else the recorded deployment's; else the dev chain's."""
    if deployment is not None:
        return settings.rpc_url or deployment.rpc_url
    return settings.effective_rpc_url


def rpc_client(settings: Settings, deployment: Deployment | None = None) -> RpcClient:
    """A client of :func:`node_url`'s node. The server and ``up`` pass no deployment: the chain they run on is
    the settings' own (a dev chain may have moved port since it was recorded)."""
    return RpcClient(node_url(settings, deployment), timeout=settings.rpc_timeout)


def auditor_rpc(url: str) -> RpcClient:
    """A client of the node an auditor reads the trail from."""
    return RpcClient(url, timeout=AUDITOR_RPC_TIMEOUT)


def blob_store(settings: Settings) -> BlobStore:
    """A Kubo node when one is configured, else the blocks in the data dir."""
    if settings.blob_store_url:
        return KuboBlobStore(settings.blob_store_url)
    return EmbeddedBlobStore(settings.blob_dir)


def auditor_blob_store(location: str) -> BlobStore:
    """The blob store an auditor names: a Kubo node's URL, or a directory of blocks."""
    if location.startswith(("http://", "https://")):
        return KuboBlobStore(location)
    if Path(location).is_dir():
        return EmbeddedBlobStore(Path(location))
    raise ConfigurationError(f"--blob-store {location!r} is neither a URL nor a directory")


def database(settings: Settings) -> Database:
    return Database(settings.effective_database_url)


def key_custody(settings: Settings) -> LocalKeyFile:
    return LocalKeyFile(settings.effective_kek_file)


def admin_sender(settings: Settings, rpc: RpcClient, *, chain_id: int | None = None) -> TransactionSender:
    """Transactions signed with the consortium admin's key (the deployment, ``admin`` commands, demo onboarding);
    for the node's chain unless ``chain_id`` is given."""
    return TransactionSender(
        rpc,
        settings.admin_key(),
        ledger_codec(),
        chain_id=rpc.chain_id() if chain_id is None else chain_id,
        receipt_timeout=settings.receipt_timeout,
    )


def admin_ledger(settings: Settings, deployment: Deployment, rpc: RpcClient | None = None) -> ConsentLedgerContract:
    """The ledger contract with the consortium admin's key signing."""
    rpc = rpc if rpc is not None else rpc_client(settings, deployment)
    sender = admin_sender(settings, rpc, chain_id=deployment.chain_id)
    return ConsentLedgerContract(rpc, deployment.ledger_address, ledger_codec(), sender)


def _provider_keys(settings: Settings) -> list[str]:
    keys = [k.strip() for k in (settings.provider_keys.get_secret_value() if settings.provider_keys else "").split(",")]
    keys = [k for k in keys if k]
    if settings.embedded_chain:
        keys += [ANVIL_DEV_KEYS[index] for index, _name, _emergency in DEMO_PROVIDERS]
    return keys


def bootstrap(settings: Settings, deployment: Deployment, *, migrate: bool = True) -> Services:
    rpc = rpc_client(settings)
    codec = ledger_codec()
    db = database(settings)
    if migrate:
        db.migrate()
    # Every account's nonces are allocated through the DB, shared by all processes on it.
    nonce_ledger = DbNonceLedger(db)
    sender = TransactionSender(
        rpc,
        settings.custodian_key(),
        codec,
        chain_id=deployment.chain_id,
        receipt_timeout=settings.receipt_timeout,
        confirmations=settings.confirmations,
        nonce_ledger=nonce_ledger,
    )
    ledger = ConsentLedgerContract(rpc, deployment.ledger_address, codec, sender)
    blobs = blob_store(settings)
    custody = key_custody(settings)
    providers = ProviderSigners(
        rpc,
        codec,
        deployment.ledger_address,
        _provider_keys(settings),
        chain_id=deployment.chain_id,
        receipt_timeout=settings.receipt_timeout,
        confirmations=settings.confirmations,
        nonce_ledger=nonce_ledger,
    )
    categories_cache: dict[str, bytes] = {}

    def categories() -> dict[str, bytes]:
        # The registry only grows and its codes are in the CategoryRegistered events.
        if len(categories_cache) < ledger.category_count():
            for lg in rpc.get_logs(
                deployment.ledger_address,
                deployment.block_number,
                rpc.block_number(),
                [codec.topic("CategoryRegistered")],
            ):
                event = codec.decode_log(lg)
                if event is not None:
                    categories_cache[str(event.args["code"])] = bytes(event.args["categoryId"])
        return dict(categories_cache)

    disclosure_log = DisclosureLog(db, chain_id=deployment.chain_id, contract=deployment.ledger_address)
    batcher = DisclosureBatcher(
        disclosure_log,
        ledger,
        batch_size=settings.batch_size,
        batch_interval=settings.batch_interval,
        start_block=deployment.block_number,
    )
    idempotency = IdempotencyStore(db, ttl=timedelta(seconds=settings.idempotency_ttl))
    parse_workers = ParseWorkers(settings.parse_workers)

    def check_fhir_in_worker(document: bytes) -> None:
        parse_workers.run(check_fhir, document, inline_below=FHIR_INLINE_BELOW)

    # One lock per record, shared by the node's amendments and the hub's erasure.
    locks = RecordLocks()
    uploads = UploadService(
        db=db,
        idempotency=idempotency,
        blobs=blobs,
        custody=custody,
        ledger=ledger,
        providers=providers,
        categories=categories,
        locks=locks,
        fhir_check=check_fhir_in_worker,
        max_fhir_bytes=settings.max_json_body,
    )
    # Per-read pending disclosures are adopted whatever the mode (a former per-read run may have left some).
    per_read_disclosures = PerReadDisclosureStrategy(db=db, ledger=ledger)
    disclosure: DisclosureStrategy = per_read_disclosures
    if settings.disclosure_mode == "batched":
        disclosure = BatchedDisclosureStrategy(
            db=db, idempotency=idempotency, ledger=ledger, disclosure_log=disclosure_log, on_disclosure=batcher.notify
        )
    reads = ReadService(
        db=db,
        idempotency=idempotency,
        blobs=blobs,
        custody=custody,
        ledger=ledger,
        disclosure=disclosure,
        traced=per_read_disclosures,
    )
    erasure = ErasureService(db=db, blobs=blobs, ledger=ledger, locks=locks)
    records = RecordLookups(db=db)
    indexer = EventIndexer(
        rpc,
        DbIndexStore(db),
        codec,
        deployment.ledger_address,
        start_block=deployment.block_number,
        confirmations=settings.confirmations,
    )
    domain = Eip712Domain(chain_id=deployment.chain_id, verifying_contract=deployment.ledger_address)

    def chain_time() -> int:
        return int(rpc.get_block("latest")["timestamp"], 16)

    consents = ConsentService(db=db, ledger=ledger, domain=domain, indexer=indexer, chain_time=chain_time)
    auth = AuthService(
        db=db, secret=load_or_create_secret(settings.data_dir / "keys" / "api-token.key"), chain_id=deployment.chain_id
    )
    directory = Directory(ledger, deployment.block_number)
    audit = AuditService(
        rpc=rpc, contract=deployment.ledger_address, start_block=deployment.block_number, blobs=blobs, db=db
    )
    return Services(
        settings,
        deployment,
        rpc,
        ledger,
        db,
        blobs,
        custody,
        providers,
        uploads,
        reads,
        erasure,
        records,
        per_read_disclosures,
        indexer,
        consents,
        auth,
        directory,
        domain,
        categories,
        audit,
        disclosure_log,
        batcher,
        idempotency,
        parse_workers,
    )
