"""An in-process fake Kubo node (RPC API subset) for running the blob-store contract suite offline.

It answers like Kubo does, including its error shapes (HTTP 500 with ``{"Message", "Code", "Type"}``), and
keeps blocks in an :class:`EmbeddedBlobStore`. Like Kubo (without ``Datastore.HashOnRead``) it serves stored
block bytes without checking them, so the adapter's own verification is what the corruption tests exercise.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ledger_service.blobs import Cid, EmbeddedBlobStore, KuboBlobStore
from ledger_service.blobs.car import encode_header
from ledger_service.blobs.unixfs import encode_varint
from ledger_service.errors import BlobError, BlobNotFound

FAKE_KUBO_URL = "http://kubo.test:5001"


def _json(body: object) -> httpx.Response:
    return httpx.Response(200, json=body)


def _kubo_error(message: str, status: int = 500) -> httpx.Response:
    return httpx.Response(status, json={"Message": message, "Code": 0, "Type": "error"})


class FakeKubo:
    def __init__(self, root: Path) -> None:
        self.backing = EmbeddedBlobStore(root)
        self.commands: list[str] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST":
            return httpx.Response(405, text="405 - Method Not Allowed")
        command = request.url.path.removeprefix("/api/v0/")
        self.commands.append(command)
        params = request.url.params
        try:
            cid = Cid.parse(params["arg"]) if "arg" in params else None
            return self._dispatch(command, params, cid, request)
        except BlobNotFound as exc:
            return _kubo_error(f"block was not found locally (offline): ipld: could not find {exc.details.get('cid')}")
        except BlobError as exc:
            return _kubo_error(str(exc))

    def _dispatch(
        self, command: str, params: httpx.QueryParams, cid: Cid | None, request: httpx.Request
    ) -> httpx.Response:
        if command == "add":
            if params.get("cid-version") != "1" or params.get("raw-leaves") != "true":
                return _kubo_error("fake Kubo only builds CIDv1 raw-leaves DAGs", 400)
            result = self.backing.put(_multipart_file(request))
            if params.get("pin") != "true":
                self.backing.unpin(result.cid)
            line = {"Name": "blob", "Hash": str(result.cid), "Size": str(result.size)}
            return httpx.Response(200, content=json.dumps(line).encode() + b"\n")
        if command == "repo/gc":
            before = set(self.backing.iter_blocks())
            self.backing.gc()
            removed = before - set(self.backing.iter_blocks())
            lines = b"".join(json.dumps({"Key": {"/": str(key)}}).encode() + b"\n" for key in removed)
            return httpx.Response(200, content=lines)
        if cid is None:
            return httpx.Response(404, text="404 page not found")
        return self._dispatch_for_cid(command, params, cid)

    def _dispatch_for_cid(self, command: str, params: httpx.QueryParams, cid: Cid) -> httpx.Response:
        if command == "block/get":
            return httpx.Response(200, content=self._raw_block(cid))
        if command == "block/stat":
            return _json({"Key": str(cid), "Size": len(self._raw_block(cid))})
        if command == "pin/add":
            self.backing.pin(cid)
            return _json({"Pins": [str(cid)]})
        if command == "pin/rm":
            if not self.backing.is_pinned(cid):
                return _kubo_error("not pinned or pinned indirectly")
            self.backing.unpin(cid)
            return _json({"Pins": [str(cid)]})
        if command == "pin/ls":
            if params.get("type") == "recursive" and self.backing.is_pinned(cid):
                return _json({"Keys": {str(cid): {"Type": "recursive"}}})
            return _kubo_error(f"path '/ipfs/{cid}' is not pinned")
        if command == "dag/export":
            return httpx.Response(200, content=self._car(cid))
        return httpx.Response(404, text="404 page not found")

    def _raw_block(self, cid: Cid) -> bytes:
        try:
            return self.backing.block_path(cid).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound("missing", cid=str(cid)) from None

    def _car(self, root: Cid) -> bytes:
        header = encode_header([root])
        out = bytearray(encode_varint(len(header)) + header)
        for cid in self.backing.blocks_of(root):  # dag-pb nodes are decoded (so checked); leaves are not
            data = self._raw_block(cid)
            out += encode_varint(len(cid.bytes) + len(data)) + cid.bytes + data
        return bytes(out)


def _multipart_file(request: httpx.Request) -> bytes:
    boundary = request.headers["content-type"].split("boundary=", 1)[1].encode()
    body = request.read()
    start = body.index(b"\r\n\r\n", body.index(b"--" + boundary)) + 4
    end = body.rindex(b"\r\n--" + boundary + b"--")
    return body[start:end]


@pytest.fixture
def fake_kubo(tmp_path: Path) -> FakeKubo:
    return FakeKubo(tmp_path / "fake-kubo")


@pytest.fixture
def kubo_over_fake(fake_kubo: FakeKubo) -> Iterator[tuple[KuboBlobStore, EmbeddedBlobStore]]:
    """A KuboBlobStore wired to the fake node, and the store physically holding that node's blocks."""
    client = httpx.Client(transport=httpx.MockTransport(fake_kubo.handler))
    with client, KuboBlobStore(FAKE_KUBO_URL, client=client) as store:
        yield store, fake_kubo.backing
