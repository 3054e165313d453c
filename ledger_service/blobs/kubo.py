"""A :class:`~ledger_service.blobs.store.BlobStore` backed by a Kubo node over its RPC HTTP API.

Kubo is not trusted for integrity: content is read block by block with ``block/get`` and every block is
re-hashed while walking the DAG (``cat`` would return whatever the node has), ``dag/export`` output is
checked block by block, and the CID Kubo reports for an ``add`` must equal the one computed locally
while streaming the upload. httpx failures surface as ``BlobStoreUnavailable`` and "not found" answers
as ``BlobNotFound``.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterable, Iterator, Mapping
from types import TracebackType
from typing import BinaryIO

import httpx

from ledger_service.blobs.car import CarReader, write_car
from ledger_service.blobs.cid import Cid, verify_block
from ledger_service.blobs.store import BlobSource, PutResult, iter_pieces
from ledger_service.blobs.unixfs import CHUNK_SIZE, DagBuilder, links_of, open_file, walk_dag
from ledger_service.errors import BlobError, BlobNotFound, BlobStoreUnavailable, ConfigurationError

DEFAULT_TIMEOUT = 60.0
# Kubo refuses to store or exchange blocks over 2 MiB; anything bigger is not a block we asked for.
MAX_BLOCK_SIZE = 2 * 1024 * 1024

_ADD_PARAMS = {
    "cid-version": "1",
    "raw-leaves": "true",
    "pin": "true",
    # Explicit so a node whose Import.* config differs still builds the DAG we verify against.
    "chunker": f"size-{CHUNK_SIZE}",
    "hash": "sha2-256",
    "progress": "false",
}
_NOT_FOUND_MARKERS = ("not found", "could not find", "no link named")


def _kubo_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    message = body.get("Message") if isinstance(body, dict) else None
    return message if isinstance(message, str) else response.text[:500]


class KuboBlobStore:
    """Blob store over a Kubo node, e.g. ``KuboBlobStore("http://127.0.0.1:5001")``.

    ``offline`` (default true) stops Kubo from searching the IPFS network for blocks it lacks, so a
    missing blob fails fast with ``BlobNotFound`` as it does in the embedded store.
    """

    def __init__(
        self,
        base_url: str,
        *,
        client: httpx.Client | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        offline: bool = True,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigurationError(f"Kubo RPC URL must be http(s)://host:port, got {base_url!r}")
        self._api = base_url.rstrip("/") + "/api/v0/"
        self._owns_client = client is None
        self._client = client if client is not None else httpx.Client(timeout=timeout)
        self._offline = {"offline": "true"} if offline else {}

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> KuboBlobStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------- BlobStore

    def put(self, source: BlobSource) -> PutResult:
        builder = DagBuilder()
        distinct: set[Cid] = set()
        boundary = uuid.uuid4().hex

        def body() -> Iterator[bytes]:
            # Hand-built multipart so the upload streams and is hashed locally on the way out.
            yield (
                f"--{boundary}\r\n"
                'Content-Disposition: form-data; name="file"; filename="blob"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            for piece in iter_pieces(source):
                distinct.update(block.cid for block in builder.write(piece))
                yield piece
            distinct.update(block.cid for block in builder.finish())
            yield f"\r\n--{boundary}--\r\n".encode()

        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        with self._stream("add", _ADD_PARAMS, content=body(), headers=headers) as response:
            lines = response.read().splitlines()
        reported = self._added_cid(lines)
        expected = builder.root
        if reported != expected:
            raise BlobError(
                f"Kubo stored the blob as {reported} but its content hashes to {expected}; "
                "the node does not build DAGs like `ipfs add --cid-version=1 --raw-leaves`",
                cid=str(expected),
                kubo_cid=str(reported),
            )
        return PutResult(expected, builder.size, len(distinct))

    def open(self, cid: Cid) -> Iterator[bytes]:
        return open_file(Cid.parse(cid), self._load)

    def read(self, cid: Cid) -> bytes:
        return b"".join(self.open(cid))

    def has(self, cid: Cid) -> bool:
        try:
            self._call("block/stat", {"arg": str(Cid.parse(cid)), **self._offline})
        except BlobNotFound:
            return False
        return True

    def pin(self, cid: Cid) -> None:
        self._call("pin/add", {"arg": str(Cid.parse(cid)), "recursive": "true", **self._offline})

    def unpin(self, cid: Cid) -> None:
        try:
            self._call("pin/rm", {"arg": str(Cid.parse(cid)), "recursive": "true", **self._offline})
        except BlobNotFound:
            return  # a blob the node does not have cannot be pinned
        except BlobError as exc:
            if "not pinned" not in str(exc.details.get("kubo_message", "")):
                raise

    def is_pinned(self, cid: Cid) -> bool:
        cid = Cid.parse(cid)
        try:
            body = self._call("pin/ls", {"arg": str(cid), "type": "recursive", **self._offline})
        except BlobNotFound:
            return False
        except BlobError as exc:
            if "not pinned" in str(exc.details.get("kubo_message", "")):
                return False
            raise
        keys = self._json(body, "pin/ls").get("Keys")
        return isinstance(keys, dict) and str(cid) in keys

    def gc(self) -> int:
        removed = 0
        with self._stream("repo/gc", {}) as response:
            for line in response.iter_lines():
                if not line.strip():
                    continue
                event = self._json(line.encode(), "repo/gc")
                if event.get("Error"):
                    raise BlobStoreUnavailable(f"Kubo garbage collection failed: {event['Error']}", command="repo/gc")
                if event.get("Key"):
                    removed += 1
        return removed

    def export_car(self, cid: Cid, out: BinaryIO) -> None:
        cid = Cid.parse(cid)
        params = {"arg": str(cid), "progress": "false", **self._offline}
        with self._stream("dag/export", params) as response:
            reader = CarReader(response.iter_bytes())
            if reader.roots != [cid]:
                raise BlobError(f"Kubo exported a CAR for {reader.roots} instead of {cid}", cid=str(cid))
            write_car(out, [cid], self._checked_export(cid, reader))

    def blocks_of(self, cid: Cid) -> list[Cid]:
        return [block_cid for block_cid, _ in walk_dag(Cid.parse(cid), self._load, load_leaves=False)]

    # ------------------------------------------------------------- RPC plumbing

    def _load(self, cid: Cid) -> bytes:
        """Raw bytes of one block (verified by the caller)."""
        with self._stream("block/get", {"arg": str(cid), **self._offline}) as response:
            data = bytearray()
            for piece in response.iter_bytes():
                data += piece
                if len(data) > MAX_BLOCK_SIZE:
                    raise BlobError(f"Kubo returned more than {MAX_BLOCK_SIZE} bytes for block {cid}", cid=str(cid))
            return bytes(data)

    def _checked_export(self, root: Cid, reader: Iterable[tuple[Cid, bytes]]) -> Iterator[tuple[Cid, bytes]]:
        """Pass through blocks that hash correctly and belong to the DAG, in pre-order, once each."""
        expected = {root}
        seen: set[Cid] = set()
        for cid, data in reader:
            if cid not in expected or cid in seen:
                raise BlobError(f"Kubo's export of {root} contains an unexpected block {cid}", cid=str(cid))
            verify_block(cid, data, root=root)
            seen.add(cid)
            expected.update(links_of(cid, data))
            yield cid, data
        missing = expected - seen
        if missing:
            first = min(missing, key=str)
            raise BlobNotFound(f"Kubo's export of {root} lacks block {first}", cid=str(first), root=str(root))

    def _call(self, command: str, params: Mapping[str, str]) -> bytes:
        with self._stream(command, params) as response:
            return response.read()

    @contextlib.contextmanager
    def _stream(
        self,
        command: str,
        params: Mapping[str, str],
        *,
        content: Iterator[bytes] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Iterator[httpx.Response]:
        url = self._api + command
        try:
            with self._client.stream("POST", url, params=params, content=content, headers=headers) as response:
                if response.is_error:
                    response.read()
                    raise self._error(command, params, response)
                yield response
        except httpx.HTTPError as exc:
            raise BlobStoreUnavailable(
                f"Kubo RPC {command} failed: {type(exc).__name__}: {exc}", command=command, url=url
            ) from exc

    @staticmethod
    def _error(command: str, params: Mapping[str, str], response: httpx.Response) -> BlobError:
        message = _kubo_message(response)
        details: dict[str, object] = {"command": command, "status": response.status_code, "kubo_message": message}
        if "arg" in params:
            details["cid"] = params["arg"]
        subject = params.get("arg", command)
        if response.status_code != 404 and any(marker in message.lower() for marker in _NOT_FOUND_MARKERS):
            return BlobNotFound(f"{subject} not found on Kubo ({command}: {message})", **details)
        if response.status_code in (400, 405, 413):
            return BlobError(f"Kubo rejected {command}: HTTP {response.status_code}: {message}", **details)
        return BlobStoreUnavailable(f"Kubo RPC {command} failed: HTTP {response.status_code}: {message}", **details)

    @staticmethod
    def _json(body: bytes, command: str) -> dict[str, object]:
        try:
            value = json.loads(body)
        except ValueError as exc:
            raise BlobStoreUnavailable(f"Kubo RPC {command} returned invalid JSON", command=command) from exc
        if not isinstance(value, dict):
            raise BlobStoreUnavailable(f"Kubo RPC {command} returned unexpected JSON", command=command)
        return value

    def _added_cid(self, lines: list[bytes]) -> Cid:
        reported: object = None
        for line in lines:
            if line.strip():
                reported = self._json(line, "add").get("Hash", reported)
        if not isinstance(reported, str):
            raise BlobStoreUnavailable("Kubo add returned no CID", command="add")
        return Cid.parse(reported)
