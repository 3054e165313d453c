"""The node's hub client against a scripted hub (httpx.MockTransport) built from the hub's own parts.

The scripted hub signs in with the real AuthService (the EIP-4361 and EIP-191 checks the hub makes), parses
relayed messages with the real ``parse_message`` of ``POST /v1/relay``, stores blobs in a real
EmbeddedBlobStore and answers errors with the edge's own problem+json encoding. What it scripts is only
what a test needs to go wrong: a rotated secret, a tampered download, a hub that is down.
"""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from eth_utils import keccak
from fastapi.responses import JSONResponse

from consent_api import problems
from consent_api.routers.relay import RelayIn, RelayOut, parse_message
from consent_api.schemas import LoginOut
from ledger_service import errors
from ledger_service.blobs import BlobStore, Cid, EmbeddedBlobStore, compute_cid
from ledger_service.codec import eip712
from ledger_service.db.database import Database
from ledger_service.domain import siwe
from ledger_service.domain.consent import Eip712Domain, EmergencyAccessRequest, RecordAnchor, SignedMessage
from ledger_service.errors import (
    AccountNotFound,
    BlobError,
    BlobIntegrityError,
    BlobNotFound,
    BlobStoreUnavailable,
    ChainError,
    ChainUnavailable,
    ConsentDenied,
    DirectoryConflict,
    IdempotencyConflict,
    InvalidMediaType,
    InvalidPasskey,
    InvalidRecordContent,
    KeyDestroyed,
    LedgerError,
    NotFoundError,
    NotRecordAuthor,
    PasskeyRefused,
    PermissionDenied,
    RateLimited,
    RecordErased,
    RecordNotFound,
    RecordTooLarge,
    RelayBusy,
    RelaySuspended,
    ReleaseRefused,
    ShareNotHeld,
    SignatureError,
    StaleVersion,
    TransactionReverted,
    TransactionTimeout,
    ValidationError,
)
from ledger_service.hub.auth import AuthenticationError, AuthService
from ledger_service.node.hub_client import (
    ERROR_CLASSES,
    HttpRelayer,
    HubBlobStore,
    HubOwnsStore,
    HubRefused,
    HubSession,
    HubSignInRefused,
    HubUnavailable,
    message_json,
)
from ledger_service.node.signing import LocalKeySigner
from ledger_service.node.uploads import refused_for_sure
from ledger_service.records.relaying import RecordFacts, Relayer, RelayOutcome

ORIGIN = "https://hub.test:8443"
CHAIN_ID = 31337
PROVIDER_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"  # anvil's second account
PATIENT = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
DOMAIN = Eip712Domain(chain_id=CHAIN_ID, verifying_contract="0x5FbDB2315678afecb367f032d93F642f64180aa3")
TX_HASH = "0x" + "ab" * 32
RECORD_ID = "0x" + "cd" * 32

Handler = Callable[[httpx.Request], httpx.Response]


def as_httpx(response: JSONResponse) -> httpx.Response:
    return httpx.Response(response.status_code, headers=list(response.headers.items()), content=bytes(response.body))


def hub_problem(exc: LedgerError) -> httpx.Response:
    """The answer the hub's edge gives for ``exc`` (consent_api/problems.py)."""
    return as_httpx(problems._for_ledger_error(exc))


class Clock:
    def __init__(self) -> None:
        self.now = 1_750_000_000.0

    def __call__(self) -> float:
        return self.now


class FakeHub:
    """The hub's routes a node uses, over the hub's own parts; ``overrides`` script a route's answer."""

    def __init__(self, db: Database, blob_root: Path, clock: Clock, origin: str = ORIGIN, prefix: str = "") -> None:
        self.db = db
        self.prefix = prefix  # the path the hub is served under, behind its proxy
        self.clock = clock
        self.origin = origin
        self.auth = AuthService(db=db, secret=os.urandom(32), chain_id=CHAIN_ID, clock=clock, token_ttl=600)
        self.blobs = EmbeddedBlobStore(blob_root)
        self.requests: list[httpx.Request] = []
        self.logins: list[str] = []
        self.relayed: list[tuple[SignedMessage, bytes, str | None, RecordFacts | None]] = []
        self.uploads: list[bytes] = []
        self.overrides: dict[tuple[str, str], Handler] = {}
        self.tamper_at: int | None = None  # flip the byte at this offset of every download

    def rotate_secret(self) -> None:
        """The hub restarts with a new token secret: every token it issued before is refused."""
        self.auth = AuthService(
            db=self.db, secret=os.urandom(32), chain_id=CHAIN_ID, clock=self.clock, token_ttl=self.auth.token_ttl
        )

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        path = request.url.path.removeprefix(self.prefix)
        route = "/v1/blobs/{cid}" if path.startswith("/v1/blobs/") else path
        override = self.overrides.get((request.method, route))
        if override is not None:
            return override(request)
        try:
            return self._route(request, route)
        except LedgerError as exc:
            return hub_problem(exc)

    def _route(self, request: httpx.Request, route: str) -> httpx.Response:
        if route == "/v1/auth/nonce":
            return httpx.Response(200, json={"nonce": self.auth.issue_nonce()})
        if route == "/v1/auth/login":
            body = json.loads(request.content)
            token, session = self.auth.login(body["message"], body["signature"], origins=(self.origin,))
            self.logins.append(body["message"])
            out = LoginOut(token=token, address=session.address, roles=["provider"], expires_at=session.expires_at)
            return httpx.Response(200, json=out.model_dump(by_alias=True))
        if route == "/v1/relay":
            relay_in = RelayIn.model_validate(json.loads(request.content))
            message = parse_message(relay_in.primary_type, relay_in.message)
            facts = relay_in.record
            self.relayed.append(
                (
                    message,
                    bytes.fromhex(relay_in.signature[2:]),
                    relay_in.reason,
                    None
                    if facts is None
                    else RecordFacts(facts.media_type, facts.plaintext_size, facts.ciphertext_size),
                )
            )
            answer = RelayOut(tx_hash=TX_HASH, block_number=7, record_id=RECORD_ID, version=1)
            return httpx.Response(201, json=answer.model_dump(by_alias=True, exclude_none=True))
        if route == "/v1/blobs":
            self._caller(request)
            self.uploads.append(request.content)
            put = self.blobs.put(request.content)
            return httpx.Response(201, json={"cid": str(put.cid), "size": put.size})
        if route == "/v1/blobs/{cid}":
            self._caller(request)
            data = bytearray(self.blobs.read(Cid.parse(request.url.path.rsplit("/", 1)[1])))
            if self.tamper_at is not None:
                data[self.tamper_at] ^= 0x01
            return httpx.Response(200, content=bytes(data))
        if route.startswith("/v1/nonces/"):
            return httpx.Response(200, json={"nonce": 5})
        raise NotFoundError(f"no route {route}")

    def _caller(self, request: httpx.Request) -> str:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer":
            raise AuthenticationError("sign in first")
        return self.auth.verify_token(token).address


@pytest.fixture(scope="module")
def hub_db(tmp_path_factory: pytest.TempPathFactory) -> Database:
    db = Database(f"sqlite:///{tmp_path_factory.mktemp('hub')}/hub.db")
    db.migrate()
    return db


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def hub(hub_db: Database, tmp_path: Path, clock: Clock) -> FakeHub:
    return FakeHub(hub_db, tmp_path / "blobs", clock)


@pytest.fixture
def session(hub: FakeHub, clock: Clock) -> Iterator[HubSession]:
    with HubSession(ORIGIN + "/", chain_id=CHAIN_ID, transport=httpx.MockTransport(hub), clock=clock) as opened:
        yield opened


@pytest.fixture
def provider() -> LocalKeySigner:
    return LocalKeySigner(PROVIDER_KEY)


@pytest.fixture
def store(session: HubSession, provider: LocalKeySigner) -> HubBlobStore:
    return HubBlobStore(session, provider)


def anchor(*, nonce: int = 1) -> RecordAnchor:
    return RecordAnchor(
        patient=PATIENT,
        author=LocalKeySigner(PROVIDER_KEY).address,
        category=keccak(b"LAB"),
        salt=b"\x11" * 32,
        cid=compute_cid(b"ciphertext").cid.bytes,
        commitment=b"\x22" * 32,
        nonce=nonce,
        deadline=1_750_003_600,
    )


def signed(message: SignedMessage) -> bytes:
    return LocalKeySigner(PROVIDER_KEY).sign_digest(eip712.digest(DOMAIN, message))


def content(size: int, seed: int = 1) -> bytes:
    return bytes((i * 7 + seed) % 251 for i in range(size))


# ----------------------------------------------------------------- sign-in


@pytest.mark.parametrize(
    ("base_url", "origin", "domain", "prefix"),
    [
        (ORIGIN + "/", ORIGIN, "hub.test:8443", ""),
        ("https://HUB.test:443/ledger", "https://hub.test", "hub.test", "/ledger"),
    ],
)
def test_sign_in_sends_the_eip4361_message_the_hub_accepts(
    hub_db: Database,
    tmp_path: Path,
    clock: Clock,
    provider: LocalKeySigner,
    base_url: str,
    origin: str,
    domain: str,
    prefix: str,
) -> None:
    hub = FakeHub(hub_db, tmp_path / "blobs", clock, origin=origin, prefix=prefix)
    with HubSession(base_url, chain_id=CHAIN_ID, transport=httpx.MockTransport(hub), clock=clock) as session:
        token = session.token(provider)

    # The hub's own AuthService took the message (domain and URI on its origin, chain id, EIP-191 signature
    # by the provider) and the token it issued names the provider.
    assert hub.auth.verify_token(token).address == provider.address
    (message,) = hub.logins
    parsed = siwe.parse(message)
    assert (parsed.domain, parsed.uri, parsed.chain_id, parsed.address) == (domain, origin, CHAIN_ID, provider.address)
    assert siwe.render(parsed) == message
    assert [r.url.path for r in hub.requests] == [prefix + "/v1/auth/nonce", prefix + "/v1/auth/login"]


def test_sign_in_for_another_chain_is_refused_clearly(hub: FakeHub, clock: Clock, provider: LocalKeySigner) -> None:
    session = HubSession(ORIGIN, chain_id=1, transport=httpx.MockTransport(hub), clock=clock)
    with session, pytest.raises(HubSignInRefused, match="expected 31337") as refused:
        session.token(provider)
    assert refused.value.details["hub_problem"] == "invalid-sign-in"


def test_a_token_is_reused_until_shortly_before_it_expires(
    hub: FakeHub, session: HubSession, clock: Clock, provider: LocalKeySigner
) -> None:
    first = session.token(provider)
    clock.now += 500  # the token lives 600 s: still fresh
    assert session.token(provider) == first
    assert len(hub.logins) == 1

    clock.now += 50  # within the last minute of its life: replaced before it can expire on the way
    second = session.token(provider)
    assert second != first
    assert len(hub.logins) == 2
    assert hub.auth.verify_token(second).address == provider.address


def test_a_refused_token_is_replaced_by_one_fresh_sign_in(
    hub: FakeHub, store: HubBlobStore, session: HubSession, provider: LocalKeySigner
) -> None:
    put = store.put(b"sealed bytes")
    stale = session.token(provider)
    hub.rotate_secret()  # the hub restarted with a new secret: the cached token is now refused

    assert store.read(put.cid) == b"sealed bytes"
    assert len(hub.logins) == 2
    assert session.token(provider) != stale
    downloads = [r for r in hub.requests if r.url.path.startswith("/v1/blobs/")]
    assert [r.headers["Authorization"] == f"Bearer {stale}" for r in downloads] == [True, False]


def test_a_token_the_hub_keeps_refusing_fails_after_one_retry(
    hub: FakeHub, store: HubBlobStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    put = store.put(b"sealed bytes")
    hub.overrides[("GET", "/v1/blobs/{cid}")] = lambda _r: hub_problem(AuthenticationError("bearer token revoked"))

    with pytest.raises(HubSignInRefused, match="bearer token revoked") as refused:
        store.read(put.cid)
    assert len(hub.logins) == 2  # the first sign-in for the upload, one more after the first 401
    tokens = [r.headers["Authorization"].removeprefix("Bearer ") for r in hub.requests if "Authorization" in r.headers]
    for token in tokens:
        assert token not in str(refused.value)
        assert token not in caplog.text


# ----------------------------------------------------------------- relay


def test_relay_sends_the_message_the_hub_parses_back(hub: FakeHub, session: HubSession) -> None:
    relayer: Relayer = HttpRelayer(session)
    message = anchor(nonce=2**60 + 3)  # above 2^53: sent as a decimal string
    signature = signed(message)

    facts = RecordFacts("application/fhir+json", plaintext_size=1200, ciphertext_size=1300)

    outcome = relayer.relay(message, signature, record=facts)

    assert outcome == RelayOutcome(
        tx_hash=TX_HASH, block_number=7, replayed=False, record_id=RECORD_ID, version=1, consent_id=None, log_index=None
    )
    assert hub.relayed == [(message, signature, None, facts)]
    assert message_json(message)["nonce"] == str(2**60 + 3)
    assert message_json(message)["deadline"] == 1_750_003_600
    assert hub.logins == []  # relaying needs no sign-in: the signature is the party's


def test_an_emergency_reason_goes_beside_its_message(hub: FakeHub, session: HubSession) -> None:
    reason = "unconscious patient in the emergency room"
    message = EmergencyAccessRequest(
        patient=PATIENT,
        accessor=LocalKeySigner(PROVIDER_KEY).address,
        record_id=bytes.fromhex(RECORD_ID[2:]),
        version=1,
        reason_hash=keccak(reason.encode()),
        nonce=9,
        deadline=1_750_003_600,
    )
    HttpRelayer(session).relay(message, signed(message), reason=reason)
    assert hub.relayed == [(message, signed(message), reason, None)]


# What the relay raises for each problem code the hub's edge can answer with (consent_api/problems.py).
# A refusal comes back as the service's own error class; a 5xx that is not the hub's word on the chain
# leaves the act's fate unknown: HubUnavailable.
RELAY_ERRORS: dict[str, type[LedgerError]] = {
    "validation-error": ValidationError,
    "invalid-signature": SignatureError,
    "invalid-sign-in": siwe.SiweError,
    "unauthorized": HubRefused,
    "permission-denied": PermissionDenied,
    "consent-denied": ConsentDenied,
    "not-record-author": NotRecordAuthor,
    "not-found": NotFoundError,
    "record-not-found": RecordNotFound,
    "method-not-allowed": HubRefused,
    "idempotency-conflict": IdempotencyConflict,
    "stale-version": StaleVersion,
    "transaction-reverted": TransactionReverted,
    "record-erased": RecordErased,
    "key-destroyed": KeyDestroyed,
    "payload-too-large": RecordTooLarge,
    "rate-limited": RateLimited,
    "unsupported-media-type": HubRefused,
    "invalid-record-content": InvalidRecordContent,
    "invalid-media-type": InvalidMediaType,
    "blob-integrity": HubUnavailable,
    "blob-not-found": HubUnavailable,
    "decryption-failed": HubUnavailable,
    "chain-unavailable": ChainUnavailable,
    "relay-busy": RelayBusy,
    "blob-store-unavailable": HubUnavailable,
    "database-unavailable": HubUnavailable,
    "transaction-timeout": TransactionTimeout,
    "internal-error": HubUnavailable,
    "release-refused": ReleaseRefused,
    "share-not-held": ShareNotHeld,
    "custody-unavailable": HubUnavailable,
    "key-share-error": HubUnavailable,
    "relay-suspended": RelaySuspended,
    "invalid-passkey": InvalidPasskey,
    "account-not-found": AccountNotFound,
    "passkey-refused": PasskeyRefused,
    "directory-conflict": DirectoryConflict,
}


def test_every_problem_code_of_the_hub_has_its_expected_error() -> None:
    assert set(RELAY_ERRORS) == set(problems.PROBLEMS)


def test_every_error_class_is_found_by_its_code() -> None:
    for value in vars(errors).values():
        if isinstance(value, type) and issubclass(value, LedgerError):
            assert ERROR_CLASSES[value.code] is value


@pytest.mark.parametrize("code", sorted(problems.PROBLEMS))
def test_each_problem_of_the_hub_comes_back_as_its_error(hub: FakeHub, session: HubSession, code: str) -> None:
    status, _title = problems.PROBLEMS[code]
    detail = f"the hub says {code}"
    hub.overrides[("POST", "/v1/relay")] = lambda _r: as_httpx(problems.problem(status, code, detail))

    with pytest.raises(LedgerError) as raised:
        HttpRelayer(session).relay(anchor(), signed(anchor()))

    assert type(raised.value) is RELAY_ERRORS[code]
    assert detail in str(raised.value)
    # An upload discards its pending version only when the act surely is not on chain.
    unknown = isinstance(raised.value, ChainError) and not isinstance(raised.value, TransactionReverted)
    assert refused_for_sure(raised.value) is not unknown


@pytest.mark.parametrize(
    ("refusal", "kept"),
    [
        (SignatureError("nonce already used", reason="nonce-used"), {"reason": "nonce-used"}),
        (ValidationError("cid must be 0x-hex", field="message.cid"), {"field": "message.cid"}),
        (ConsentDenied("access refused: no active consent"), {}),
        (RateLimited("relay requests are limited", retry_after=7), {"retry_after": 7}),
        (RelayBusy("all relay slots are waiting", retry_after=2), {"retry_after": 2}),
    ],
)
def test_a_refusal_keeps_its_reason_and_details(
    hub: FakeHub, session: HubSession, refusal: LedgerError, kept: dict[str, object]
) -> None:
    hub.overrides[("POST", "/v1/relay")] = lambda _r: hub_problem(refusal)
    with pytest.raises(LedgerError) as raised:
        HttpRelayer(session).relay(anchor(), signed(anchor()))
    assert type(raised.value) is type(refusal)
    assert str(raised.value) == str(refusal)
    assert kept.items() <= raised.value.details.items()


def test_a_revert_keeps_the_contract_error(hub: FakeHub, session: HubSession) -> None:
    reverted = TransactionReverted("anchorRecordBySig reverted: RecordAlreadyExists", error_name="RecordAlreadyExists")
    hub.overrides[("POST", "/v1/relay")] = lambda _r: hub_problem(reverted)
    with pytest.raises(TransactionReverted) as raised:
        HttpRelayer(session).relay(anchor(), signed(anchor()))
    assert raised.value.error_name == "RecordAlreadyExists"
    assert refused_for_sure(raised.value)


def _connect_error(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def _read_timeout(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("timed out", request=request)


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(lambda _r: httpx.Response(503, text="<html>maintenance</html>"), id="proxy-503"),
        pytest.param(lambda _r: httpx.Response(502, text="bad gateway"), id="proxy-502"),
        pytest.param(_connect_error, id="connection-refused"),
        pytest.param(_read_timeout, id="read-timeout"),
        pytest.param(lambda _r: httpx.Response(201, text="not json"), id="unreadable-success"),
    ],
)
def test_a_hub_down_or_unreadable_leaves_the_outcome_unknown(
    hub: FakeHub, session: HubSession, answer: Handler
) -> None:
    hub.overrides[("POST", "/v1/relay")] = answer
    with pytest.raises(HubUnavailable) as raised:
        HttpRelayer(session).relay(anchor(), signed(anchor()))
    assert isinstance(raised.value, ChainError)
    assert not isinstance(raised.value, TransactionReverted)
    assert not refused_for_sure(raised.value)  # the upload keeps its pending version for recovery
    assert problems._for_ledger_error(raised.value).status_code == 503  # the node's own edge: unavailable


def test_a_signature_the_hub_echoes_is_not_repeated(hub: FakeHub, session: HubSession) -> None:
    message = anchor()
    signature = signed(message)
    echoed = f"signature 0x{signature.hex()} (or {signature.hex().upper()}) is not acceptable"
    hub.overrides[("POST", "/v1/relay")] = lambda _r: as_httpx(problems.problem(400, "invalid-signature", echoed))
    with pytest.raises(SignatureError) as raised:
        HttpRelayer(session).relay(message, signature)
    assert signature.hex() not in str(raised.value).lower()
    assert "is not acceptable" in str(raised.value)


def test_an_unused_nonce_comes_from_the_hub(hub: FakeHub, session: HubSession, provider: LocalKeySigner) -> None:
    assert HttpRelayer(session).fresh_nonce(provider.address.lower()) == 5
    assert hub.requests[-1].url.path == f"/v1/nonces/{provider.address}"


def test_a_nonce_the_hub_cannot_give_is_a_chain_error(hub: FakeHub, session: HubSession) -> None:
    hub.overrides[("GET", f"/v1/nonces/{LocalKeySigner(PROVIDER_KEY).address}")] = lambda _r: httpx.Response(503)
    with pytest.raises(HubUnavailable):
        HttpRelayer(session).fresh_nonce(LocalKeySigner(PROVIDER_KEY).address)


# ----------------------------------------------------------------- blobs


def test_blobs_round_trip_with_the_cid_the_stores_assign(hub: FakeHub, store: HubBlobStore) -> None:
    data = content(700_000)  # three 256 KiB chunks: a dag-pb root over raw leaves
    pieces = iter([data[:1000], data[1000:400_000], data[400_000:]])

    put = store.put(pieces)

    assert put == compute_cid(data)
    assert put.cid.codec_name == "dag-pb"
    assert hub.uploads == [data]
    upload = next(r for r in hub.requests if r.url.path == "/v1/blobs")
    assert upload.headers["Content-Length"] == str(len(data))
    assert "Transfer-Encoding" not in upload.headers
    assert b"".join(store.open(put.cid)) == data
    assert store.read(put.cid) == data
    assert store.has(put.cid)
    assert not store.has(compute_cid(b"never stored").cid)


def test_a_file_object_source_is_streamed_too(hub: FakeHub, store: HubBlobStore) -> None:
    data = content(2_000_000, seed=3)  # larger than the in-memory spool
    put = store.put(io.BytesIO(data))
    assert put == compute_cid(data)
    assert store.read(put.cid) == data


@pytest.mark.parametrize("where", [0, 300_000, 699_999], ids=["first-block", "middle-block", "last-byte"])
def test_a_tampered_download_raises_before_any_byte(hub: FakeHub, store: HubBlobStore, where: int) -> None:
    put = store.put(content(700_000))
    hub.tamper_at = where
    received: list[bytes] = []

    def download() -> None:
        received.extend(store.open(put.cid))

    with pytest.raises(BlobIntegrityError, match="corrupted"):
        download()
    assert received == []  # not a byte of the download was handed on


def test_a_longer_download_is_refused_too(hub: FakeHub, store: HubBlobStore) -> None:
    put = store.put(b"short")
    hub.overrides[("GET", "/v1/blobs/{cid}")] = lambda _r: httpx.Response(200, content=b"short and then some")
    with pytest.raises(BlobIntegrityError):
        store.read(put.cid)


def test_a_hub_that_stored_other_bytes_is_caught_at_upload(hub: FakeHub, store: HubBlobStore) -> None:
    other = compute_cid(b"something else")
    hub.overrides[("POST", "/v1/blobs")] = lambda _r: httpx.Response(201, json={"cid": str(other.cid), "size": 14})
    with pytest.raises(BlobError, match="stored the blob as"):
        store.put(b"what the node sealed")


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        pytest.param(lambda _r: httpx.Response(404), BlobNotFound, id="404"),
        pytest.param(lambda _r: hub_problem(BlobNotFound("block b... is not stored")), BlobNotFound, id="hub-lost-it"),
        pytest.param(
            lambda _r: hub_problem(BlobIntegrityError("block is corrupted")), BlobIntegrityError, id="hub-corrupt"
        ),
        pytest.param(lambda _r: hub_problem(BlobStoreUnavailable("disk gone")), BlobStoreUnavailable, id="store-down"),
        pytest.param(lambda _r: httpx.Response(503, text="maintenance"), BlobStoreUnavailable, id="proxy-503"),
        pytest.param(lambda _r: hub_problem(ChainUnavailable("rpc down")), BlobStoreUnavailable, id="hub-chain-down"),
        pytest.param(_connect_error, BlobStoreUnavailable, id="connection-refused"),
        pytest.param(_read_timeout, BlobStoreUnavailable, id="read-timeout"),
        pytest.param(lambda _r: hub_problem(PermissionDenied("not a provider")), PermissionDenied, id="403"),
    ],
)
def test_download_failures_are_blob_errors(
    hub: FakeHub, store: HubBlobStore, answer: Handler, expected: type[LedgerError]
) -> None:
    put = store.put(b"sealed bytes")
    hub.overrides[("GET", "/v1/blobs/{cid}")] = answer
    with pytest.raises(expected):
        store.open(put.cid)


def test_an_upload_the_hub_refuses_keeps_its_reason(hub: FakeHub, store: HubBlobStore) -> None:
    hub.overrides[("POST", "/v1/blobs")] = lambda _r: hub_problem(PermissionDenied("0x... is not an active provider"))
    with pytest.raises(PermissionDenied, match="not an active provider"):
        store.put(b"sealed bytes")
    hub.overrides[("POST", "/v1/blobs")] = lambda _r: httpx.Response(500, text="oops")
    with pytest.raises(BlobStoreUnavailable):
        store.put(b"sealed bytes")


def test_a_signer_may_be_named_at_each_request(hub: FakeHub, session: HubSession, provider: LocalKeySigner) -> None:
    store = HubBlobStore(session, lambda: provider)
    put = store.put(b"sealed bytes")
    assert store.read(put.cid) == b"sealed bytes"


def test_the_adapters_fit_the_seams_the_node_uses(session: HubSession, store: HubBlobStore) -> None:
    relayer: Relayer = HttpRelayer(session)  # checked by mypy: the Relayer Protocol, structurally
    blobs: BlobStore = store  # and the BlobStore Protocol (also checked at run time: runtime_checkable)
    assert isinstance(blobs, BlobStore)
    assert callable(relayer.relay)


def test_the_hub_owns_pins_and_collection(hub: FakeHub, store: HubBlobStore) -> None:
    cid = compute_cid(b"sealed bytes").cid
    store.unpin(cid)
    assert store.gc() == 0
    assert hub.requests == []  # neither asks the hub anything: its erasure unpins and collects
    for refused in (
        lambda: store.pin(cid),
        lambda: store.is_pinned(cid),
        lambda: store.export_car(cid, io.BytesIO()),
        lambda: store.blocks_of(cid),
    ):
        with pytest.raises(HubOwnsStore, match="hub"):
            refused()
    assert issubclass(HubOwnsStore, BlobError)


@pytest.mark.parametrize(
    "base_url", ["ftp://hub.test", "https://node:secret@hub.test", "https://hub.test/?x=1", "hub.test"]
)
def test_a_hub_url_that_is_no_http_origin_is_a_configuration_error(base_url: str) -> None:
    with pytest.raises(errors.ConfigurationError) as raised:
        HubSession(base_url, chain_id=CHAIN_ID)
    assert "secret" not in str(raised.value)
