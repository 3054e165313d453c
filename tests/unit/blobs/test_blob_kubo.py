"""KuboBlobStore against scripted httpx.MockTransport handlers: URLs, parameters, errors, verification."""

from __future__ import annotations

import io
import json
import random
from collections.abc import Callable, Iterator

import httpx
import pytest

from ledger_service.blobs import CHUNK_SIZE, RAW, Cid, DagBuilder, KuboBlobStore, compute_cid, write_car
from ledger_service.blobs.kubo import MAX_BLOCK_SIZE
from ledger_service.errors import (
    BlobError,
    BlobIntegrityError,
    BlobNotFound,
    BlobStoreUnavailable,
    ConfigurationError,
)

URL = "http://kubo.test:5001"
Handler = Callable[[httpx.Request], httpx.Response]


class Kubo:
    """Routes ``/api/v0/<command>`` to per-command handlers and records every request."""

    def __init__(self, **routes: Handler) -> None:
        self.routes = {name.replace("_", "/"): handler for name, handler in routes.items()}
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return self.routes[request.url.path.removeprefix("/api/v0/")](request)

    def store(self, **kwargs: bool) -> KuboBlobStore:
        return KuboBlobStore(URL, client=httpx.Client(transport=httpx.MockTransport(self)), **kwargs)


def kubo_error(message: str, status: int = 500) -> httpx.Response:
    return httpx.Response(status, json={"Message": message, "Code": 0, "Type": "error"})


def dag(data: bytes) -> tuple[Cid, dict[Cid, bytes]]:
    builder = DagBuilder()
    blocks = dict(builder.write(data)) | dict(builder.finish())
    return builder.root, blocks


def serve_blocks(blocks: dict[Cid, bytes]) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        cid = Cid.parse(request.url.params["arg"])
        if cid not in blocks:
            return kubo_error(f"block was not found locally (offline): ipld: could not find {cid}")
        return httpx.Response(200, content=blocks[cid])

    return handle


DATA = random.Random(0).randbytes(3 * CHUNK_SIZE + 100)
ROOT, BLOCKS = dag(DATA)


# ----------------------------------------------------------------- add


def test_put_streams_multipart_with_kubo_parameters_and_checks_the_cid() -> None:
    def add(request: httpx.Request) -> httpx.Response:
        boundary = request.headers["content-type"].split("boundary=")[1]
        body = request.content
        assert body.startswith(f"--{boundary}\r\n".encode())
        assert b'name="file"' in body
        assert body.endswith(f"\r\n--{boundary}--\r\n".encode())
        assert DATA in body
        return httpx.Response(200, text=json.dumps({"Name": "blob", "Hash": str(ROOT), "Size": "786500"}) + "\n")

    kubo = Kubo(add=add)
    pieces = (DATA[i : i + 1000] for i in range(0, len(DATA), 1000))
    assert kubo.store().put(pieces) == compute_cid(DATA)
    (request,) = kubo.requests
    assert request.method == "POST"
    assert request.url.path == "/api/v0/add"
    params = request.url.params
    assert (params["cid-version"], params["raw-leaves"], params["pin"]) == ("1", "true", "true")
    assert params["chunker"] == "size-262144"


def test_put_refuses_a_node_that_builds_different_cids() -> None:
    other = compute_cid(b"something else").cid
    kubo = Kubo(add=lambda request: httpx.Response(200, json={"Name": "blob", "Hash": str(other), "Size": "5"}))
    with pytest.raises(BlobError, match="hashes to") as caught:
        kubo.store().put(DATA)
    assert caught.value.details == {"cid": str(ROOT), "kubo_cid": str(other)}


def test_put_without_a_cid_in_the_answer_is_unavailable() -> None:
    kubo = Kubo(add=lambda request: httpx.Response(200, text="\n"))
    with pytest.raises(BlobStoreUnavailable, match="no CID"):
        kubo.store().put(b"abc")


# ----------------------------------------------------------------- reads


def test_read_walks_the_dag_with_block_get_and_never_trusts_cat() -> None:
    kubo = Kubo(block_get=serve_blocks(BLOCKS))
    assert kubo.store().read(ROOT) == DATA
    assert [request.url.path for request in kubo.requests] == ["/api/v0/block/get"] * len(BLOCKS)
    assert kubo.requests[0].url.params["arg"] == str(ROOT)
    assert kubo.requests[0].url.params["offline"] == "true"


def test_offline_can_be_turned_off() -> None:
    kubo = Kubo(block_get=serve_blocks(BLOCKS))
    kubo.store(offline=False).read(ROOT)
    assert "offline" not in kubo.requests[0].url.params


def test_a_wrong_block_from_kubo_is_refused_naming_it() -> None:
    leaf = next(cid for cid in BLOCKS if cid.codec == RAW)
    tampered = dict(BLOCKS)
    tampered[leaf] = bytes([tampered[leaf][0] ^ 1]) + tampered[leaf][1:]
    store = Kubo(block_get=serve_blocks(tampered)).store()
    with pytest.raises(BlobIntegrityError) as caught:
        store.read(ROOT)
    assert caught.value.details == {"cid": str(leaf), "root": str(ROOT)}
    assert str(leaf) in str(caught.value)


def test_a_wrong_root_fails_when_opening() -> None:
    tampered = dict(BLOCKS)
    tampered[ROOT] = tampered[ROOT] + b"\x00"
    store = Kubo(block_get=serve_blocks(tampered)).store()
    with pytest.raises(BlobIntegrityError, match=str(ROOT)):
        store.open(ROOT)


def test_oversized_blocks_are_refused() -> None:
    store = Kubo(block_get=lambda request: httpx.Response(200, content=bytes(MAX_BLOCK_SIZE + 1))).store()
    with pytest.raises(BlobError, match="more than"):
        store.read(ROOT)


def test_blocks_of_fetches_only_dag_pb_nodes() -> None:
    kubo = Kubo(block_get=serve_blocks(BLOCKS))
    assert kubo.store().blocks_of(ROOT) == [ROOT, *[cid for cid in BLOCKS if cid.codec == RAW]]
    assert len(kubo.requests) == 1


# ----------------------------------------------------------------- error translation


def raising(exc: Exception) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        raise exc

    return handle


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("timed out"),
        httpx.RemoteProtocolError("peer closed connection"),
    ],
)
def test_transport_errors_become_unavailable_with_the_cause_chained(exc: Exception) -> None:
    store = Kubo(block_get=raising(exc), block_stat=raising(exc)).store()
    with pytest.raises(BlobStoreUnavailable) as caught:
        store.read(ROOT)
    assert caught.value.__cause__ is exc
    assert caught.value.details["command"] == "block/get"
    with pytest.raises(BlobStoreUnavailable):
        store.has(ROOT)  # an unreachable node is not "does not have it"


@pytest.mark.parametrize(
    ("response", "error"),
    [
        (kubo_error("block was not found locally (offline): ipld: could not find x"), BlobNotFound),
        (kubo_error("blockservice: key not found"), BlobNotFound),
        (kubo_error("leveldb: closed"), BlobStoreUnavailable),
        (httpx.Response(502, text="Bad Gateway"), BlobStoreUnavailable),
        (httpx.Response(404, text="404 page not found"), BlobStoreUnavailable),
        (kubo_error("invalid cid", 400), BlobError),
    ],
)
def test_error_answers_are_translated(response: httpx.Response, error: type[BlobError]) -> None:
    store = Kubo(block_get=lambda request: response).store()
    with pytest.raises(BlobError) as caught:
        store.read(ROOT)
    assert type(caught.value) is error
    assert caught.value.details["status"] == response.status_code
    assert caught.value.details["cid"] == str(ROOT)


def test_has_uses_block_stat() -> None:
    kubo = Kubo(block_stat=lambda request: httpx.Response(200, json={"Key": str(ROOT), "Size": 10}))
    assert kubo.store().has(ROOT)
    assert kubo.requests[0].url.path == "/api/v0/block/stat"
    missing = Kubo(block_stat=lambda request: kubo_error("block was not found locally (offline): ipld: could not find"))
    assert not missing.store().has(ROOT)


# ----------------------------------------------------------------- pins and gc


def test_pin_commands_and_their_parameters() -> None:
    kubo = Kubo(
        pin_add=lambda request: httpx.Response(200, json={"Pins": [str(ROOT)]}),
        pin_rm=lambda request: httpx.Response(200, json={"Pins": [str(ROOT)]}),
        pin_ls=lambda request: httpx.Response(200, json={"Keys": {str(ROOT): {"Type": "recursive"}}}),
    )
    store = kubo.store()
    store.pin(ROOT)
    store.unpin(ROOT)
    assert store.is_pinned(ROOT)
    add, rm, ls = kubo.requests
    assert [add.url.path, rm.url.path, ls.url.path] == ["/api/v0/pin/add", "/api/v0/pin/rm", "/api/v0/pin/ls"]
    assert add.url.params["recursive"] == rm.url.params["recursive"] == "true"
    assert ls.url.params["type"] == "recursive"
    assert {request.url.params["arg"] for request in kubo.requests} == {str(ROOT)}


def test_unpin_and_is_pinned_tolerate_not_pinned() -> None:
    store = Kubo(
        pin_rm=lambda request: kubo_error("not pinned or pinned indirectly"),
        pin_ls=lambda request: kubo_error(f"path '/ipfs/{ROOT}' is not pinned"),
    ).store()
    store.unpin(ROOT)
    assert not store.is_pinned(ROOT)


def test_unpin_still_reports_real_failures() -> None:
    store = Kubo(pin_rm=lambda request: kubo_error("repo is locked")).store()
    with pytest.raises(BlobStoreUnavailable):
        store.unpin(ROOT)


def test_gc_counts_removed_keys_and_reports_errors() -> None:
    lines = "".join(json.dumps({"Key": {"/": str(cid)}}) + "\n" for cid in BLOCKS)
    kubo = Kubo(repo_gc=lambda request: httpx.Response(200, text=lines))
    assert kubo.store().gc() == len(BLOCKS)
    assert kubo.requests[0].url.path == "/api/v0/repo/gc"
    failing = Kubo(repo_gc=lambda request: httpx.Response(200, text='{"Error": "disk on fire"}\n'))
    with pytest.raises(BlobStoreUnavailable, match="disk on fire"):
        failing.store().gc()


# ----------------------------------------------------------------- dag export


def car_of(roots: list[Cid], blocks: list[tuple[Cid, bytes]]) -> bytes:
    out = io.BytesIO()
    write_car(out, roots, blocks)
    return out.getvalue()


def pre_order() -> list[tuple[Cid, bytes]]:
    return [(ROOT, BLOCKS[ROOT])] + [(cid, data) for cid, data in BLOCKS.items() if cid.codec == RAW]


def exporting(car: bytes) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        def stream() -> Iterator[bytes]:
            for offset in range(0, len(car), 10_000):
                yield car[offset : offset + 10_000]

        return httpx.Response(200, content=stream())

    return handle


def test_export_car_passes_a_verified_export_through() -> None:
    car = car_of([ROOT], pre_order())
    kubo = Kubo(dag_export=exporting(car))
    out = io.BytesIO()
    kubo.store().export_car(ROOT, out)
    assert out.getvalue() == car
    assert kubo.requests[0].url.path == "/api/v0/dag/export"
    assert kubo.requests[0].url.params["arg"] == str(ROOT)


def test_export_car_refuses_a_corrupted_block() -> None:
    blocks = pre_order()
    cid, data = blocks[2]
    blocks[2] = (cid, data[:-1] + bytes([data[-1] ^ 1]))
    store = Kubo(dag_export=exporting(car_of([ROOT], blocks))).store()
    with pytest.raises(BlobIntegrityError, match=str(cid)):
        store.export_car(ROOT, io.BytesIO())


@pytest.mark.parametrize(
    ("car", "error", "match"),
    [
        (car_of([Cid.for_block(RAW, b"x")], pre_order()), BlobError, "instead of"),
        (car_of([ROOT], [*pre_order(), (Cid.for_block(RAW, b"x"), b"x")]), BlobError, "unexpected block"),
        (car_of([ROOT], pre_order()[:-1]), BlobNotFound, "lacks block"),
        (car_of([ROOT], pre_order()[1:]), BlobError, "unexpected block"),
    ],
)
def test_export_car_refuses_exports_that_are_not_the_dag(car: bytes, error: type[BlobError], match: str) -> None:
    store = Kubo(dag_export=exporting(car)).store()
    with pytest.raises(error, match=match):
        store.export_car(ROOT, io.BytesIO())


# ----------------------------------------------------------------- construction


def test_base_url_must_be_http() -> None:
    with pytest.raises(ConfigurationError):
        KuboBlobStore("localhost:5001")


def test_owned_client_is_closed_and_borrowed_client_is_not() -> None:
    with KuboBlobStore(URL + "/", timeout=1.0) as owned:
        assert owned._api == URL + "/api/v0/"
    assert owned._client.is_closed
    borrowed = httpx.Client()
    with KuboBlobStore(URL, client=borrowed):
        pass
    assert not borrowed.is_closed
    borrowed.close()
