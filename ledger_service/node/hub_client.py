"""The node's client of the hub: sign-in as a provider, the relay, the blob store (docs/architecture.md).

A node in its own process reaches the hub over HTTP and never imports it. Three adapters share one
:class:`HubSession`:

* the session signs in as a provider with Sign-In with Ethereum (EIP-4361), signed by the provider's
  :class:`~ledger_service.node.signing.DigestSigner`, and keeps each provider's bearer token until shortly
  before it expires; a token the hub refuses is replaced by a fresh sign-in once;
* :class:`HttpRelayer` is a :class:`~ledger_service.records.relaying.Relayer` over ``POST /v1/relay``. The
  hub's problem+json answers come back as the service's own errors (the class whose ``code`` the problem's
  ``type`` names), so a refusal reads the same as from the embedded relay. What leaves the outcome unknown
  (the hub unreachable, a timeout, a 5xx) is a :class:`HubUnavailable`: a ``ChainError`` that is not a
  revert, so an upload keeps its pending version for recovery instead of discarding it
  (``ledger_service/node/uploads.py``, ``refused_for_sure``);
* :class:`HubBlobStore` is a :class:`~ledger_service.blobs.store.BlobStore` over ``/v1/blobs``. The hub is
  not trusted for integrity: a download is spooled while its CID is computed again exactly as the stores
  assign it (``ipfs add --cid-version=1 --raw-leaves``), and no byte is handed on before it matches.

Tokens and signatures never appear in an error or a log line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import IO, Any, BinaryIO, Final, cast
from urllib.parse import urlsplit

import httpx
from eth_utils import keccak, to_checksum_address

from ledger_service import errors
from ledger_service.blobs.cid import Cid
from ledger_service.blobs.store import BlobSource, PutResult, iter_pieces
from ledger_service.blobs.unixfs import DagBuilder
from ledger_service.domain import siwe
from ledger_service.domain.consent import EIP712_TYPES, SignedMessage
from ledger_service.errors import (
    BlobError,
    BlobIntegrityError,
    BlobNotFound,
    BlobStoreUnavailable,
    ChainError,
    ChainUnavailable,
    LedgerError,
    RateLimited,
    RelayBusy,
    TransactionReverted,
    ValidationError,
)
from ledger_service.node.record_labels import SealedCopy
from ledger_service.node.signing import DigestSigner, ProviderKeys
from ledger_service.origins import normalize_origin
from ledger_service.records.relaying import RecordFacts, RelayOutcome

log = logging.getLogger(__name__)

SIGN_IN_STATEMENT: Final = "Sign in to Consent Ledger as a provider's node"
# A token is replaced this long before the hub's expiry (or at half its life, if that is sooner), so a
# request never leaves with a token that expires on the way.
TOKEN_REFRESH_MARGIN: Final = 60.0
# JSON numbers above 2^53 lose precision in many clients; the hub accepts those uint256 values as strings.
_JSON_SAFE_INT: Final = 2**53
_CHUNK: Final = 1 << 20
_SPOOL_IN_MEMORY: Final = 1 << 20  # downloads and uploads above this are spooled to a temporary file
_DETAIL_MAX: Final = 500
_HEX_RUN = re.compile(r"(?:0x)?[0-9a-fA-F]{130,}")  # 65 bytes or more of hex: a signature, never shown


class HubUnavailable(ChainUnavailable):
    """The hub could not be reached, timed out or failed (5xx): whether a relayed act reached the chain
    is unknown. A ``ChainError`` and never a ``TransactionReverted``, so the act stays pending for
    recovery; under ``ChainUnavailable``, so the node's own edge answers 503."""

    code = "hub-unavailable"


class HubSignInRefused(LedgerError):
    """The hub refused this node's sign-in as a provider, or a token it had just issued: the node's
    configuration (hub URL, chain id, provider key) does not fit the hub."""

    code = "hub-sign-in-refused"


class HubRefused(ValidationError):
    """A 4xx answer of the hub that names no error of this service; ``detail`` is the hub's."""

    code = "hub-refused"


class HubOwnsStore(BlobError):
    """An operation of the blob store that only the hub, which owns the store, performs."""

    code = "hub-owns-store"


def _error_classes() -> dict[str, type[LedgerError]]:
    """Each error code the hub may answer with, to the class of this service that carries it."""
    classes: dict[str, type[LedgerError]] = {}
    for value in [*vars(errors).values(), siwe.SiweError]:
        if isinstance(value, type) and issubclass(value, LedgerError):
            classes.setdefault(value.code, value)
    return classes


ERROR_CLASSES: Final = _error_classes()


# ----------------------------------------------------------------- problems


@dataclass(frozen=True)
class HubProblem:
    """An error answer of the hub: RFC 9457 problem+json, or whatever a proxy in front of it sent."""

    status: int
    code: str | None  # the last segment of ``type`` (``/problems/<code>``), None if there is none
    detail: str
    extra: dict[str, object]
    retry_after: int | None

    @classmethod
    def of(cls, response: httpx.Response, *, hide: tuple[str, ...] = ()) -> HubProblem:
        body: object = None
        with contextlib.suppress(ValueError, httpx.HTTPError):
            body = json.loads(response.read())
        if not isinstance(body, dict):
            body = {}
        kind = body.get("type")
        code = None
        if isinstance(kind, str) and "/problems/" in kind:
            code = kind.rpartition("/problems/")[2] or None
        detail = body.get("detail")
        if not isinstance(detail, str) or not detail:
            detail = f"HTTP {response.status_code} {response.reason_phrase}".strip()
        retry = response.headers.get("Retry-After", "")
        return cls(
            status=response.status_code,
            code=code,
            detail=_shown(detail, hide),
            extra={key: value for key, value in body.items() if key != "detail"},  # the detail only as shown
            retry_after=int(retry) if retry.isdigit() else None,
        )

    def details(self) -> dict[str, object]:
        """The problem's fields an error of this service carries (``field``, ``reason``...)."""
        found: dict[str, object] = {"hub_status": self.status}
        for key, name in (("field", "field"), ("reason", "reason"), ("recordId", "record_id"), ("purpose", "purpose")):
            value = self.extra.get(key)
            if isinstance(value, str):
                found[name] = value
        if self.code is not None:
            found["hub_problem"] = self.code
        if self.retry_after is not None:
            found["retry_after"] = self.retry_after
        return found

    def error(self) -> LedgerError | None:
        """The error of this service that the problem's code names, or None if it names none."""
        cls = ERROR_CLASSES.get(self.code or "")
        if cls is None:
            return None
        details = self.details()
        if issubclass(cls, TransactionReverted):
            contract_error = self.extra.get("contractError")
            name = contract_error if isinstance(contract_error, str) else None
            return TransactionReverted(self.detail, error_name=name, args=(), **details)
        return cls(self.detail, **details)


def _shown(text: str, hide: tuple[str, ...]) -> str:
    """``text`` cut to a sane length, with every long hex run (a signature) and each of ``hide`` removed."""
    for secret in hide:
        if secret:
            text = re.sub(re.escape(secret), "<redacted>", text, flags=re.IGNORECASE)
    return _HEX_RUN.sub("<redacted>", text)[:_DETAIL_MAX]


# ----------------------------------------------------------------- session


@dataclass(frozen=True)
class _Token:
    value: str
    refresh_at: float

    def __repr__(self) -> str:  # never the token
        return f"_Token(refresh_at={self.refresh_at})"


def hub_origin(base_url: str) -> str:
    """The origin (``scheme://host[:port]``) of the hub's base URL, as the hub compares sign-in messages
    with its own (ledger_service/origins.py): lower case, no default port."""
    parts = urlsplit(base_url.strip())
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise errors.ConfigurationError("the hub URL is http(s)://host[:port][/path], without credentials or query")
    return normalize_origin(f"{parts.scheme}://{parts.netloc}", setting="the hub URL")


class HubSession:
    """An HTTP client of one hub, signed in per provider on demand.

    ``timeout`` bounds each read (a relay answers after its transaction's receipt, so it is generous);
    ``connect_timeout`` bounds reaching the hub. ``chain_id`` is the chain the sign-in names.
    """

    def __init__(
        self,
        base_url: str,
        *,
        chain_id: int,
        timeout: float = 120.0,
        connect_timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        refresh_margin: float = TOKEN_REFRESH_MARGIN,
    ) -> None:
        self.origin = hub_origin(base_url)
        self.domain = self.origin.split("://", 1)[1]
        self.chain_id = chain_id
        self._client = httpx.Client(
            base_url=base_url.strip(),
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            transport=transport,
            follow_redirects=False,  # a bearer token goes to the hub's origin only
        )
        self._clock = clock
        self._refresh_margin = refresh_margin
        self._tokens: dict[str, _Token] = {}
        self._signing_in: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HubSession:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------- sign-in

    def sign_in_message(self, address: str, nonce: str, issued_at: datetime) -> str:
        """The EIP-4361 text the hub accepts from ``address``: its own origin's domain and URI, the chain id."""
        return siwe.render(
            siwe.SiweMessage(
                domain=self.domain,
                address=to_checksum_address(address),
                statement=SIGN_IN_STATEMENT,
                uri=self.origin,
                version="1",
                chain_id=self.chain_id,
                nonce=nonce,
                issued_at=issued_at,
                expiration_time=None,  # the nonce is single-use and expires; the token has its own expiry
                not_before=None,
                request_id=None,
                resources=(),
            )
        )

    def token(self, signer: DigestSigner) -> str:
        """A bearer token of ``signer``'s account: the cached one while fresh, else a new sign-in."""
        address = to_checksum_address(signer.address)
        with self._lock:
            cached = self._tokens.get(address)
            if cached is not None and self._clock() < cached.refresh_at:
                return cached.value
            signing_in = self._signing_in.setdefault(address, threading.Lock())
        with signing_in:  # one sign-in per account at a time; the others take its token
            with self._lock:
                cached = self._tokens.get(address)
            if cached is not None and self._clock() < cached.refresh_at:
                return cached.value
            fresh = self._sign_in(signer, address)
            with self._lock:
                self._tokens[address] = fresh
            return fresh.value

    def forget(self, signer: DigestSigner, token: str) -> None:
        """Drop ``token`` of ``signer`` (the hub refused it), unless another thread already replaced it."""
        address = to_checksum_address(signer.address)
        with self._lock:
            cached = self._tokens.get(address)
            if cached is not None and cached.value == token:
                del self._tokens[address]

    def _sign_in(self, signer: DigestSigner, address: str) -> _Token:
        nonce_answer = self._answer(self.send("GET", "/v1/auth/nonce"), address)
        nonce = nonce_answer.get("nonce")
        if not isinstance(nonce, str):
            raise HubUnavailable(f"the hub at {self.origin} answered the sign-in nonce request without a nonce")
        message = self.sign_in_message(address, nonce, datetime.fromtimestamp(int(self._clock()), UTC))
        signature = "0x" + signer.sign_digest(personal_sign_digest(message)).hex()
        login = self._answer(
            self.send("POST", "/v1/auth/login", payload={"message": message, "signature": signature}),
            address,
            hide=(signature[2:],),
        )
        token, expires_at, signed_in = login.get("token"), login.get("expiresAt"), login.get("address")
        if not isinstance(token, str) or not isinstance(expires_at, int) or not isinstance(signed_in, str):
            raise HubUnavailable(f"the hub at {self.origin} answered a sign-in without a token and its expiry")
        if to_checksum_address(signed_in) != address:
            raise HubSignInRefused(f"the hub signed in {signed_in} for a message signed by {address}")
        now = self._clock()
        margin = min(self._refresh_margin, max(0.0, (expires_at - now) / 2))
        log.info("signed in to the hub at %s as %s until %d", self.origin, address, expires_at)
        return _Token(token, expires_at - margin)

    def _answer(self, response: httpx.Response, address: str, *, hide: tuple[str, ...] = ()) -> dict[str, Any]:
        """The JSON object of a sign-in step's answer (the response is closed); its refusal as an error."""
        try:
            if response.is_success:
                body = _json_object(response)
                if body:
                    return body
                raise HubUnavailable(f"the hub at {self.origin} answered a sign-in step with no JSON object")
            problem = HubProblem.of(response, hide=hide)
        finally:
            response.close()
        if problem.status >= 500:
            raise HubUnavailable(f"the hub at {self.origin} failed the sign-in: {problem.detail}", **problem.details())
        if problem.code == RateLimited.code:
            raise RateLimited(problem.detail, **problem.details())
        raise HubSignInRefused(
            f"the hub at {self.origin} refused the sign-in of provider {address}: {problem.detail}",
            **problem.details(),
        )

    # ------------------------------------------------------------- requests

    @contextlib.contextmanager
    def request(
        self,
        method: str,
        path: str,
        *,
        signer: DigestSigner | None = None,
        content: Callable[[], Iterator[bytes]] | None = None,
        payload: object = None,
        headers: dict[str, str] | None = None,
    ) -> Iterator[httpx.Response]:
        """:meth:`send` as a context: the answer is closed on leaving."""
        response = self.send(method, path, signer=signer, content=content, payload=payload, headers=headers)
        try:
            yield response
        finally:
            response.close()

    def send(
        self,
        method: str,
        path: str,
        *,
        signer: DigestSigner | None = None,
        content: Callable[[], Iterator[bytes]] | None = None,
        payload: object = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One request, its answer's body not yet read (the caller closes it). With ``signer``, the request
        carries that provider's token; a 401 drops the token and the request goes once more with a fresh
        one (``content`` makes the body again, so it must be a factory). Raises :class:`HubUnavailable`
        when the hub cannot be reached in time, :class:`HubSignInRefused` when it refuses a fresh token."""
        for attempt in (1, 2):
            sent = dict(headers or {})
            token = None
            if signer is not None:
                token = self.token(signer)
                sent["Authorization"] = f"Bearer {token}"
            request = self._client.build_request(
                method, path, content=content() if content is not None else None, json=payload, headers=sent
            )
            try:
                response = self._client.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise HubUnavailable(
                    f"the hub at {self.origin} did not answer {method} {path}: {type(exc).__name__}"
                ) from exc
            if response.status_code != 401 or signer is None or token is None:
                return response
            problem = HubProblem.of(response, hide=(token,))
            response.close()
            self.forget(signer, token)
            if attempt == 2:
                raise HubSignInRefused(
                    f"the hub at {self.origin} refused a fresh token of provider {signer.address}: {problem.detail}",
                    **problem.details(),
                )
            log.warning("the hub at %s refused the token of %s; signing in again", self.origin, signer.address)
        raise AssertionError("unreachable")


def personal_sign_digest(message: str) -> bytes:
    """EIP-191 version 0x45 (``personal_sign``): keccak256 of the prefix, the byte length and the text."""
    data = message.encode("utf-8")
    return bytes(keccak(b"\x19Ethereum Signed Message:\n" + str(len(data)).encode("ascii") + data))


# ----------------------------------------------------------------- relay


def message_json(message: SignedMessage) -> dict[str, object]:
    """A signed message's fields as ``POST /v1/relay`` takes them: EIP-712 names, bytes as 0x-hex,
    integers as JSON numbers (as decimal strings from 2^53 on)."""
    values = message.message()
    encoded: dict[str, object] = {}
    for member in EIP712_TYPES[type(message).__name__]:
        name, kind = member["name"], member["type"]
        value = values[name]
        if kind in ("bytes", "bytes32"):
            encoded[name] = "0x" + bytes(value).hex()
        elif kind.startswith("uint"):
            encoded[name] = int(value) if int(value) < _JSON_SAFE_INT else str(int(value))
        else:
            encoded[name] = value
    return encoded


class HttpRelayer:
    """A :class:`~ledger_service.records.relaying.Relayer` over the hub's ``POST /v1/relay``.

    The hub's refusals come back as the errors the embedded relay raises. Answers that leave the act's
    fate unknown raise :class:`HubUnavailable`; the hub's own chain errors (``chain-unavailable``,
    ``transaction-timeout``, ``transaction-reverted``) keep their class. ``relay-busy`` and
    ``rate-limited`` mean nothing was sent, and say so. Over HTTP a replay looks like a first relay
    (``replayed`` False) and the event's log index is not known (None).
    """

    def __init__(self, session: HubSession) -> None:
        self.session = session

    def relay(
        self,
        message: SignedMessage,
        signature: bytes,
        *,
        reason: str | None = None,
        record: RecordFacts | None = None,
    ) -> RelayOutcome:
        kind = type(message).__name__
        body: dict[str, object] = {
            "primaryType": kind,
            "message": message_json(message),
            "signature": "0x" + signature.hex(),
        }
        if reason is not None:
            body["reason"] = reason
        if record is not None:
            body["record"] = {
                "mediaType": record.media_type,
                "plaintextSize": record.plaintext_size,
                "ciphertextSize": record.ciphertext_size,
            }
        with self.session.request("POST", "/v1/relay", payload=body) as response:
            if response.is_success:
                return self._outcome(kind, response)
            problem = HubProblem.of(response, hide=(signature.hex(),))
        raise self._refusal(kind, problem)

    def fresh_nonce(self, signer: str) -> int:
        """An unused message nonce of ``signer`` on chain, from ``GET /v1/nonces/{signer}`` (for
        :class:`~ledger_service.node.signing.MessageNonces`)."""
        address = to_checksum_address(signer)
        with self.session.request("GET", f"/v1/nonces/{address}") as response:
            if not response.is_success:
                problem = HubProblem.of(response)
                raise HubUnavailable(
                    f"the hub at {self.session.origin} gave no nonce of {address}: {problem.detail}",
                    **problem.details(),
                )
            nonce = _json_object(response).get("nonce")
        if type(nonce) is not int or nonce < 0:
            raise HubUnavailable(f"the hub at {self.session.origin} answered no nonce of {address}")
        return nonce

    def _outcome(self, kind: str, response: httpx.Response) -> RelayOutcome:
        answer = _json_object(response)
        tx_hash, block = answer.get("txHash"), answer.get("blockNumber")
        record_id, version, consent_id = answer.get("recordId"), answer.get("version"), answer.get("consentId")
        if (
            not isinstance(tx_hash, str)
            or type(block) is not int
            or not (record_id is None or isinstance(record_id, str))
            or not (version is None or type(version) is int)
            or not (consent_id is None or isinstance(consent_id, str))
        ):
            # The hub said yes but not what it did: as unknown as no answer at all.
            raise HubUnavailable(f"the hub at {self.session.origin} relayed the {kind} but its answer is unreadable")
        return RelayOutcome(
            tx_hash=tx_hash,
            block_number=block,
            replayed=False,
            record_id=record_id,
            version=version,
            consent_id=consent_id,
            log_index=None,
        )

    def _refusal(self, kind: str, problem: HubProblem) -> LedgerError:
        error = problem.error()
        if isinstance(error, ChainError | RelayBusy | RateLimited):
            return error  # the hub's own word on the chain, or a refusal before anything was sent
        if problem.status >= 500 or problem.status < 400:
            return HubUnavailable(
                f"the hub at {self.session.origin} failed to relay the {kind} ({problem.detail}); "
                "whether it reached the chain is unknown",
                **problem.details(),
            )
        if error is not None:
            return error
        return HubRefused(f"the hub refused the {kind}: {problem.detail}", **problem.details())


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = json.loads(response.read())
    except (ValueError, httpx.HTTPError):
        body = None
    return body if isinstance(body, dict) else {}


# ----------------------------------------------------------------- blobs


SignerSource = DigestSigner | Callable[[], DigestSigner]


def _spool_chunks(spool: IO[bytes]) -> Iterator[bytes]:
    spool.seek(0)
    while chunk := spool.read(_CHUNK):
        yield chunk


def _release(spool: IO[bytes]) -> Iterator[bytes]:
    """The verified bytes, then the spool is closed (or when the reader stops early)."""
    try:
        yield from _spool_chunks(spool)
    finally:
        spool.close()


class HubBlobStore:
    """A :class:`~ledger_service.blobs.store.BlobStore` over the hub's ``/v1/blobs``, as a provider.

    ``signer`` is the provider whose token the requests carry (a signer, or a callable naming it at each
    request). The hub owns the store: it pins what it stores, and erasure there unpins and collects, so
    :meth:`unpin` and :meth:`gc` do nothing here (a version the ledger refused leaves ciphertext at the
    hub whose key the node has discarded); :meth:`pin`, :meth:`is_pinned`, :meth:`export_car` and
    :meth:`blocks_of` raise :class:`HubOwnsStore`. ``max_download_bytes`` bounds what a download may
    spool (None: no bound).
    """

    def __init__(self, session: HubSession, signer: SignerSource, *, max_download_bytes: int | None = None) -> None:
        self.session = session
        self._signer = signer
        self.max_download_bytes = max_download_bytes

    def _provider(self) -> DigestSigner:
        if hasattr(self._signer, "sign_digest"):
            return cast(DigestSigner, self._signer)
        return self._signer()

    # ------------------------------------------------------------- BlobStore

    def put(self, source: BlobSource) -> PutResult:
        """Spool ``source`` while computing its CID, send it, and check the hub stored it under that CID."""
        builder = DagBuilder()
        distinct: set[Cid] = set()
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as spool:
            for piece in iter_pieces(source):
                distinct.update(block.cid for block in builder.write(piece))
                spool.write(piece)
            distinct.update(block.cid for block in builder.finish())
            expected = PutResult(builder.root, builder.size, len(distinct))
            headers = {"Content-Type": "application/octet-stream", "Content-Length": str(expected.size)}
            with self._send("POST", "/v1/blobs", content=lambda: _spool_chunks(spool), headers=headers) as response:
                if not response.is_success:
                    raise self._refusal(HubProblem.of(response), str(expected.cid))
                answer = _json_object(response)
        reported, size = answer.get("cid"), answer.get("size")
        if reported != str(expected.cid) or size != expected.size:
            raise BlobError(
                f"the hub stored the blob as {reported!r} ({size!r} bytes) but its content is {expected.cid} "
                f"({expected.size} bytes)",
                cid=str(expected.cid),
            )
        return expected

    def open(self, cid: Cid) -> Iterator[bytes]:
        """The verified content: downloaded whole to a spool and hashed again first, so a blob whose
        bytes do not make ``cid`` raises :class:`BlobIntegrityError` before any byte is handed on."""
        cid = Cid.parse(cid)
        spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # noqa: SIM115 - closed by _release
        try:
            builder = DagBuilder()
            with self._send("GET", f"/v1/blobs/{cid}") as response:
                if not response.is_success:
                    raise self._refusal(HubProblem.of(response), str(cid))
                try:
                    for piece in response.iter_bytes(_CHUNK):
                        builder.write(piece)
                        spool.write(piece)
                        if self.max_download_bytes is not None and builder.size > self.max_download_bytes:
                            raise BlobIntegrityError(
                                f"the hub sent more than {self.max_download_bytes} bytes for {cid}", cid=str(cid)
                            )
                except httpx.HTTPError as exc:
                    raise BlobStoreUnavailable(
                        f"the download of {cid} from the hub at {self.session.origin} broke off: {type(exc).__name__}",
                        cid=str(cid),
                    ) from exc
            builder.finish()
            if builder.root != cid:
                raise BlobIntegrityError(
                    f"the hub's bytes for {cid} hash to {builder.root}: the download is corrupted", cid=str(cid)
                )
        except BaseException:
            spool.close()
            raise
        return _release(spool)

    def read(self, cid: Cid) -> bytes:
        return b"".join(self.open(cid))

    def has(self, cid: Cid) -> bool:
        """Whether the hub serves ``cid`` (its store checks the root before answering); the body is not read."""
        cid = Cid.parse(cid)
        with self._send("GET", f"/v1/blobs/{cid}") as response:
            if response.is_success:
                return True
            problem = HubProblem.of(response)
        error = self._refusal(problem, str(cid))
        if isinstance(error, BlobNotFound):
            return False
        raise error

    def unpin(self, cid: Cid) -> None:
        """Nothing: the hub's erasure unpins and collects what it stores."""
        Cid.parse(cid)

    def gc(self) -> int:
        """Nothing to collect here: the hub collects its own store."""
        return 0

    def pin(self, cid: Cid) -> None:
        raise HubOwnsStore(f"the hub pins what it stores; {Cid.parse(cid)} cannot be pinned from a node")

    def is_pinned(self, cid: Cid) -> bool:
        raise HubOwnsStore(f"the hub owns the pins; whether {Cid.parse(cid)} is pinned is known there only")

    def export_car(self, cid: Cid, out: BinaryIO) -> None:
        raise HubOwnsStore(f"the hub owns the store; {Cid.parse(cid)} is exported as a CAR there")

    def blocks_of(self, cid: Cid) -> list[Cid]:
        raise HubOwnsStore(f"the hub owns the store; the blocks of {Cid.parse(cid)} are listed there")

    # ------------------------------------------------------------- plumbing

    @contextlib.contextmanager
    def _send(
        self,
        method: str,
        path: str,
        *,
        content: Callable[[], Iterator[bytes]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Iterator[httpx.Response]:
        try:
            response = self.session.send(method, path, signer=self._provider(), content=content, headers=headers)
        except HubUnavailable as exc:
            raise BlobStoreUnavailable(str(exc), **exc.details) from exc
        try:
            yield response
        finally:
            response.close()

    def _refusal(self, problem: HubProblem, cid: str) -> LedgerError:
        """The error for a blob request the hub did not answer with success."""
        error = problem.error()
        if problem.status == 404 or isinstance(error, BlobNotFound):
            return BlobNotFound(f"the hub has no blob {cid}: {problem.detail}", cid=cid, **problem.details())
        if isinstance(error, BlobError):
            return error  # the hub's store found its own copy corrupt, or is unavailable
        if problem.status >= 500 or problem.status < 400:
            return BlobStoreUnavailable(
                f"the hub at {self.session.origin} failed the blob request: {problem.detail}",
                cid=cid,
                **problem.details(),
            )
        if error is not None:
            return error
        return HubRefused(f"the hub refused the blob request: {problem.detail}", cid=cid, **problem.details())


class HubLabelDeposit:
    """Hands a label the node sealed to a patient to the hub, which serves the patient's record list
    (``PUT /v1/records/{id}/labels`` as the record's author; docs/architecture.md, "Record titles")."""

    def __init__(self, session: HubSession, keys: ProviderKeys) -> None:
        self._session = session
        self._keys = keys

    def __call__(self, copy: SealedCopy) -> None:
        payload = {
            "version": copy.version,
            "recipient": copy.recipient,
            "recipientKey": "0x" + copy.recipient_key.hex(),
            "sealed": "0x" + copy.sealed.hex(),
        }
        signer = self._keys.signer_for(copy.author)
        with self._session.request("PUT", f"/v1/records/{copy.record_id}/labels", signer=signer, payload=payload) as r:
            if not r.is_success:
                r.read()
                problem = HubProblem.of(r)
                raise problem.error() or HubRefused(f"the hub refused the record's label: {problem.detail}")
