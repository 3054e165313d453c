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
from typing import Any, Final

from ledger_service.blobs import BlobStore, EmbeddedBlobStore, KuboBlobStore
from ledger_service.chain.accounts import ContractSignatures, PatientAccounts
from ledger_service.chain.deploy import DEMO_PROVIDERS, Deployment
from ledger_service.chain.indexer import EventIndexer
from ledger_service.chain.ledger import ConsentLedgerContract, ledger_codec
from ledger_service.chain.rpc import RpcClient
from ledger_service.chain.sender import TransactionSender
from ledger_service.crypto.key_file import X25519KeyFile
from ledger_service.custodian.long_term_key import CustodianKeyFile
from ledger_service.custodian.service import Custodian, CustodianConfig
from ledger_service.custodian.store import CustodianStore
from ledger_service.db.database import Database
from ledger_service.db.idempotency import IdempotencyStore
from ledger_service.db.indexer_store import DbIndexStore
from ledger_service.db.models import RecordRow
from ledger_service.db.nonces import DbNonceLedger
from ledger_service.domain.consent import AccessRequest, Eip712Domain
from ledger_service.errors import ConfigurationError, KeyCustodyError, LedgerError
from ledger_service.hub.accounts import AccountService
from ledger_service.hub.audit import AuditService
from ledger_service.hub.auth import AuthService, load_or_create_secret
from ledger_service.hub.batched_disclosure import BatchedDisclosureStrategy
from ledger_service.hub.batching import DisclosureBatcher, DisclosureLog
from ledger_service.hub.catalog import RecordCatalog
from ledger_service.hub.consents import ConsentService
from ledger_service.hub.directory import Directory
from ledger_service.hub.erasure import ErasureService
from ledger_service.hub.records import RecordLookups
from ledger_service.hub.relay import Relay, RevertSuspensions
from ledger_service.node.custodian_client import HttpCustodian
from ledger_service.node.custody import CustodianClient, CustodianInfo, EncryptionKeys, ThresholdCustody
from ledger_service.node.erasures import ErasureFollower
from ledger_service.node.fhir import FHIR_INLINE_BELOW, check_fhir
from ledger_service.node.patient_directory import PatientDirectory
from ledger_service.node.per_read_disclosure import PerReadDisclosureStrategy
from ledger_service.node.reads import ReadService
from ledger_service.node.record_labels import LabelService, SealedCopy
from ledger_service.node.signing import Deadlines, MessageNonces, ProviderKeys
from ledger_service.node.uploads import UploadService
from ledger_service.records.disclosure import DisclosureStrategy, explain_refusal
from ledger_service.records.locks import RecordLocks
from ledger_service.records.relaying import Relayer
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
    custody: ThresholdCustody | None  # a node's (a hub alone holds no key custody)
    providers: ProviderKeys
    relay: Relay | None  # the hub's (None in a node of its own, which relays through its hub over HTTP)
    uploads: UploadService
    reads: ReadService
    erasure: ErasureService | None  # the hub's
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
    erasures: ErasureFollower | None = None  # a node of its own: destroys its keys of records erased on chain
    custodians: list[Custodian] = field(default_factory=list)  # the embedded default's (`up`), in this process
    accounts: AccountService | None = None  # the hub's: the patients' passkey accounts
    labels: LabelService | None = None  # record titles, sealed (docs/architecture.md, "Record titles")
    _listing: list[tuple[int, str | None, bytes]] | None = None
    # index -> URL of each embedded custodian once `up` serves it (consent_api/server.py binds the ports)
    custodian_urls_bound: dict[int, str] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    patient_directory: PatientDirectory | None = None  # the node's: its providers' own patient directories

    def start_background(self) -> None:
        """Follow the chain's events in a daemon thread; in batched mode (or with entries a former batched
        run left unanchored) also anchor the disclosure log's roots in another. A node of its own instead
        follows the chain's erasures to destroy its keys. Embedded custodians follow the erasures too."""
        for custodian in self.custodians:
            follower = threading.Thread(
                target=custodian.follow_erasures,
                args=(self._stop,),
                kwargs={"on_error": lambda exc: log.warning("custodian erasure follower: %s", exc)},
                name=f"custodian-{custodian.config.index}-erasures",
                daemon=True,
            )
            follower.start()
            self._threads.append(follower)
        recovery = threading.Thread(target=self._recover_periodically, name="recovery", daemon=True)
        recovery.start()
        self._threads.append(recovery)
        if self.erasures is not None:
            follower = threading.Thread(target=self._follow_erasures, name="erasure-follower", daemon=True)
            follower.start()
            self._threads.append(follower)
            return
        thread = threading.Thread(target=self.indexer.run, args=(self._stop,), name="event-indexer", daemon=True)
        thread.start()
        self._threads.append(thread)
        if self.settings.disclosure_mode == "batched" or self.disclosure_log.size() > 0:
            batcher = threading.Thread(
                target=self.batcher.run, args=(self._stop,), name="disclosure-batcher", daemon=True
            )
            batcher.start()
            self._threads.append(batcher)

    def _follow_erasures(self, interval: float = 2.0) -> None:
        assert self.erasures is not None
        while not self._stop.wait(interval):
            try:
                self.erasures.shred_erased()
            except LedgerError as exc:
                log.warning("erasure follower: %s", exc)

    def _recover_periodically(self, interval: float = 30.0) -> None:
        """Resolve work a crashed process (this one earlier, or another replica) left half-done."""
        stale_after = 2 * self.settings.receipt_timeout
        while not self._stop.wait(interval):
            try:
                self.uploads.recover_pending(stale_after=stale_after)
                self.per_read_disclosures.finish_traced_disclosures(stale_after=stale_after)
            except LedgerError as exc:
                log.warning("recovery: %s", exc)

    def chain_time(self) -> int:
        return int(self.rpc.get_block("latest")["timestamp"], 16)

    def embedded_custodian_url(self, index: int) -> str:
        """Where embedded custodian ``index`` is served: the port `up` bound, else the configured one."""
        return self.custodian_urls_bound.get(index) or embedded_custodian_url(self.settings, index)

    def custodian_listing(self) -> tuple[int, list[tuple[int, str | None, bytes]]] | None:
        """(threshold, [(index, url, public key)]) of the custodians this installation uses, for ``GET /v1/chain``:
        the embedded ones, or those of ``custodian_urls`` as they describe themselves; None if it has none."""
        s = self.settings
        if self.custodians:
            return s.custody_threshold, [
                (c.config.index, self.embedded_custodian_url(c.config.index), c.keys.public_key)
                for c in self.custodians
            ]
        if not s.custodian_urls:
            return None
        if self._listing is None:
            listed = []
            for url in s.custodian_urls:
                client = HttpCustodian(url, timeout=s.rpc_timeout)
                try:
                    info = client.info()
                finally:
                    client.close()
                listed.append((info.index, url.rstrip("/"), info.public_key))
            self._listing = sorted(listed)
        return s.custody_threshold, self._listing

    @property
    def hub_relay(self) -> Relay:
        """The hub's relay; a node of its own has none (its routes that need one are not served)."""
        if self.relay is None:
            raise ConfigurationError("this process is a node: relaying is its hub's")
        return self.relay

    @property
    def hub_accounts(self) -> AccountService:
        if self.accounts is None:
            raise ConfigurationError("this process is a node: passkey accounts are its hub's")
        return self.accounts

    @property
    def hub_erasure(self) -> ErasureService:
        if self.erasure is None:
            raise ConfigurationError("this process is a node: erasure is its hub's")
        return self.erasure

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
        if self.custody is not None:
            self.custody.close()
        if self.patient_directory is not None:
            self.patient_directory.close()
        for custodian in self.custodians:
            custodian.store.close()
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


def custodian_service(settings: Settings, deployment: Deployment, *, rpc: RpcClient | None = None) -> Custodian:
    """A key custodian (``serve custodian``): its key file and store in the data dir, its own chain node."""
    if settings.custodian_index is None:
        raise ConfigurationError("a custodian needs its index: CONSENT_LEDGER_CUSTODIAN_INDEX (1 to custody_total)")
    if settings.provider_keys is not None:
        raise ConfigurationError("a custodian holds no provider key; unset CONSENT_LEDGER_PROVIDER_KEYS")
    config = CustodianConfig(
        index=settings.custodian_index,
        threshold=settings.custody_threshold,
        total=settings.custody_total,
        chain_id=deployment.chain_id,
        ledger=deployment.ledger_address,
        from_block=deployment.block_number,
        confirmations=settings.confirmations,
    )
    rpc = rpc if rpc is not None else rpc_client(settings, deployment)
    ledger = ConsentLedgerContract(rpc, deployment.ledger_address, ledger_codec())
    return Custodian(
        config, CustodianKeyFile(settings.custodian_key_file), CustodianStore(settings.custodian_store_file), ledger
    )


class LocalCustodian:
    """A custodian of the embedded default (``up``), called in this process: the same checks as over HTTP."""

    def __init__(self, custodian: Custodian) -> None:
        self.custodian = custodian
        self.name = f"custodian {custodian.config.index} (embedded)"

    def info(self) -> CustodianInfo:
        c = self.custodian.config
        return CustodianInfo(c.index, self.custodian.keys.public_key, c.threshold, c.total)

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
    ) -> None:
        self.custodian.deposit(
            patient=patient,
            author=author,
            record_id=record_id,
            version=version,
            recipient=recipient,
            sealed=sealed,
            signature=signature,
        )

    def release(
        self,
        *,
        record_id: bytes,
        version: int,
        accessor: str,
        disclosure_tx: bytes | None = None,
        receipt: dict[str, Any] | None = None,
    ) -> bytes:
        return self.custodian.release(
            record_id=record_id, version=version, accessor=accessor, disclosure_tx=disclosure_tx, receipt=receipt
        )


def embedded_custodian_port(settings: Settings, index: int) -> int:
    """Where ``up`` serves embedded custodian ``index`` (docs/operations.md, "Key custodians"); 0: a free port
    the system picks (``custodian_ports_from = 0``)."""
    if settings.custodian_ports_from == 0:
        return 0
    return (settings.custodian_ports_from or settings.port + 10) + index - 1


def embedded_custodian_url(settings: Settings, index: int) -> str:
    return f"http://{settings.host}:{embedded_custodian_port(settings, index)}"


def embedded_custodians(settings: Settings, deployment: Deployment, rpc: RpcClient) -> list[Custodian]:
    """The embedded default's custodians, each with its own data dir under ``custodians/`` (docs/operations.md)."""
    return [
        custodian_service(
            settings.model_copy(
                update={
                    "data_dir": settings.data_dir / "custodians" / str(index),
                    "custodian_index": index,
                    "provider_keys": None,
                }
            ),
            deployment,
            rpc=rpc,
        )
        for index in range(1, settings.custody_total + 1)
    ]


def _custody(
    settings: Settings,
    deployment: Deployment,
    rpc: RpcClient,
    *,
    providers: ProviderKeys,
    ledger: ConsentLedgerContract,
    relayer: Relayer,
    nonces: MessageNonces,
    deadlines: Deadlines,
    domain: Eip712Domain,
) -> tuple[ThresholdCustody | None, list[Custodian]]:
    """The node's threshold custody: its custodians over HTTP (``custodian_urls``) or, in the embedded default,
    custodians of this process. A hub alone has none: it holds no key."""
    if settings.role == "hub":
        return None, []
    embedded: list[Custodian] = []
    clients: list[CustodianClient]
    if settings.custodian_urls:
        clients = [HttpCustodian(url, timeout=settings.rpc_timeout) for url in settings.custodian_urls]
    elif settings.role == "all":
        embedded = embedded_custodians(settings, deployment, rpc)
        clients = [LocalCustodian(c) for c in embedded]
    else:
        raise ConfigurationError(
            "a node needs its key custodians: set CONSENT_LEDGER_CUSTODIAN_URLS to a JSON list of their base URLs"
        )
    files = {
        account: X25519KeyFile(settings.data_dir / "keys" / f"encryption-{account.lower()}.json")
        for account in providers.accounts
    }
    encryption = EncryptionKeys(
        files,
        registered_key=ledger.encryption_key_of,
        relayer=relayer,
        keys=providers,
        nonces=nonces,
        deadlines=deadlines,
        domain=domain,
    )
    custody = ThresholdCustody(
        clients, threshold=settings.custody_threshold, domain=domain, keys=providers, encryption=encryption
    )
    return custody, embedded


def _provider_keys(settings: Settings) -> list[str]:
    """The provider keys of this process's node: none for a hub alone, which refuses any it is given."""
    keys = [k.strip() for k in (settings.provider_keys.get_secret_value() if settings.provider_keys else "").split(",")]
    keys = [k for k in keys if k]
    if settings.role == "hub":
        if keys:
            raise ConfigurationError(
                "the hub holds no provider key: give CONSENT_LEDGER_PROVIDER_KEYS to the provider's node "
                "(`consent-ledger serve node`), not to the hub"
            )
        return []
    if settings.embedded_chain and settings.role == "all":
        keys += [ANVIL_DEV_KEYS[index] for index, _name, _emergency in DEMO_PROVIDERS]
    if settings.role == "node" and not keys:
        raise ConfigurationError("a node signs for its providers: set CONSENT_LEDGER_PROVIDER_KEYS")
    return keys


def provider_accounts(settings: Settings) -> list[str]:
    """The providers this data dir's node signs for (their deliveries and versions are in its DB)."""
    return ProviderKeys.from_private_keys(_provider_keys(settings)).accounts


def _explain(ledger: ConsentLedgerContract, db: Database, request: AccessRequest) -> str:
    """Why an access request is refused, in the consent rule's words (the record as this hub knows it)."""
    rid = "0x" + request.record_id.hex()
    with db.session() as s:
        record = s.get(RecordRow, rid)
    if record is None:
        return "access refused: no consent covers this request"
    return explain_refusal(ledger, record, request.accessor, request.record_id, request.purpose)


def bootstrap(settings: Settings, deployment: Deployment, *, migrate: bool = True) -> Services:
    rpc = rpc_client(settings)
    codec = ledger_codec()
    db = database(settings)
    if migrate:
        db.migrate()
    # Every account's nonces are allocated through the DB, shared by all processes on it.
    nonce_ledger = DbNonceLedger(db)
    # The node's signers: its providers' keys sign their anchors and access requests, never a transaction.
    providers = ProviderKeys.from_private_keys(_provider_keys(settings))
    domain = Eip712Domain(chain_id=deployment.chain_id, verifying_contract=deployment.ledger_address)
    relay: Relay | None = None
    accounts: AccountService | None = None
    label_deposit: Callable[[SealedCopy], None] | None = None  # a node of its own: patients' copies to the hub
    relayer: Relayer
    blobs: BlobStore
    if settings.role == "node":
        # A node of its own: no relayer key, no blob store; it reaches the hub over HTTP (docs/operations.md).
        if not settings.hub_url:
            raise ConfigurationError("a node needs its hub: set CONSENT_LEDGER_HUB_URL")
        if settings.disclosure_mode == "batched":
            raise ConfigurationError(
                "batched disclosure mode keeps its log at the hub: a node of its own discloses per read "
                "(unset CONSENT_LEDGER_DISCLOSURE_MODE)"
            )
        from ledger_service.node.hub_client import HttpRelayer, HubBlobStore, HubLabelDeposit, HubSession

        ledger = ConsentLedgerContract(rpc, deployment.ledger_address, codec)  # views only
        session = HubSession(settings.hub_url, chain_id=deployment.chain_id, timeout=settings.receipt_timeout + 30)
        relayer = HttpRelayer(session)
        blobs = HubBlobStore(session, providers.signer_for(providers.accounts[0]))
        label_deposit = HubLabelDeposit(session, providers)
    else:
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
        relay = Relay(
            db=db,
            ledger=ledger,
            domain=domain,
            explain=lambda request: _explain(ledger, db, request),
            suspensions=RevertSuspensions(settings.relay_revert_suspension),
        )
        relayer = relay
        accounts = AccountService(
            db=db,
            accounts=PatientAccounts(rpc, deployment.account_factory, sender),
            chain_id=deployment.chain_id,
        )
    message_nonces = MessageNonces(nonce_ledger, ledger.fresh_nonce)

    def chain_time() -> int:
        return int(rpc.get_block("latest")["timestamp"], 16)

    deadlines = Deadlines(chain_time)
    custody, custodians = _custody(
        settings,
        deployment,
        rpc,
        providers=providers,
        ledger=ledger,
        relayer=relayer,
        nonces=message_nonces,
        deadlines=deadlines,
        domain=domain,
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

    if relay is not None:
        relay.catalog = RecordCatalog(db=db, categories=categories)
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
        keys=providers,
        nonces=message_nonces,
        deadlines=deadlines,
        relayer=relayer,
        domain=domain,
        categories=categories,
        locks=locks,
        fhir_check=check_fhir_in_worker,
        max_fhir_bytes=settings.max_json_body,
    )
    # Per-read pending disclosures are adopted whatever the mode (a former per-read run may have left some).
    per_read_disclosures = PerReadDisclosureStrategy(db=db, relayer=relayer)
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
        keys=providers,
        nonces=message_nonces,
        deadlines=deadlines,
        domain=domain,
        receipt_of=lambda leaf: _receipt_of(disclosure_log, batcher, leaf),
    )
    erasure = None if relay is None else ErasureService(db=db, blobs=blobs, ledger=ledger, relay=relay, locks=locks)
    records = RecordLookups(db=db)
    indexer = EventIndexer(
        rpc,
        DbIndexStore(db),
        codec,
        deployment.ledger_address,
        start_block=deployment.block_number,
        confirmations=settings.confirmations,
    )
    consents = ConsentService(db=db, ledger=ledger, indexer=indexer, chain_time=chain_time)
    auth = AuthService(
        db=db,
        secret=load_or_create_secret(settings.data_dir / "keys" / "api-token.key"),
        chain_id=deployment.chain_id,
        contracts=ContractSignatures(rpc),  # contract accounts sign in by ERC-1271
        counterfactual=accounts,  # the hub deploys its factory's passkey accounts at an ERC-6492 sign-in
    )
    directory = Directory(ledger, deployment.block_number)
    audit = AuditService(
        rpc=rpc,
        contract=deployment.ledger_address,
        start_block=deployment.block_number,
        blobs=blobs,
        db=db,
        operator_accounts=providers.accounts,  # another provider's node keeps its own deliveries and versions
    )
    services = Services(
        settings,
        deployment,
        rpc,
        ledger,
        db,
        blobs,
        custody,
        providers,
        relay,
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
        ErasureFollower(db=db, indexer=indexer) if settings.role == "node" else None,
        custodians,
        accounts,
        LabelService(
            db=db,
            encryption=None if custody is None else custody.encryption,
            registered_key=ledger.encryption_key_of,
            chain_id=deployment.chain_id,
            ledger=deployment.ledger_address,
            deposit=label_deposit,
        ),
    )
    if settings.role != "hub":
        # the node's own file, never the hub's DB (docs/architecture.md, "Patient directory")
        services.patient_directory = PatientDirectory(settings.data_dir / "node" / "patient-directory.sqlite3")
    return services


def _receipt_of(log_: DisclosureLog, batcher: DisclosureBatcher, leaf_index: int) -> dict[str, Any]:
    """The receipt of a batched disclosure for the custodians: its batch is anchored now if it is not yet
    (concurrent reads share one anchor: the batcher anchors everything pending under its lock)."""
    for _attempt in range(3):
        proof = log_.proof(leaf_index)
        if "status" not in proof:
            return proof
        if proof["status"] != "pending":
            raise KeyCustodyError(f"no receipt for disclosure-log entry {leaf_index}: {proof.get('error')}")
        batcher.anchor_now()
    raise KeyCustodyError(f"disclosure-log entry {leaf_index} is not anchored yet")
