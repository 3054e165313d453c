"""Floods of the routes anyone may call: sign-in nonces and relayed consent messages.

Each test plays the attacker against the real API process (tests/faults/harness.py) with the
default limits (nothing raised): a flood from one client is refused with 429 and Retry-After,
costs no DB row per request, is counted per signer, and does not stall the other routes. A
second client is told apart by its source address (127.0.0.x: the server sees a different peer).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from limits import parse

from ledger_service.settings import Settings
from scripts.soak import LedgerClient
from tests.faults.harness import CLINIC, ApiServer, Node, new_patient

pytestmark = pytest.mark.integration

DEFAULTS = Settings.model_fields
SIGN_IN_PER_CLIENT = parse(str(DEFAULTS["auth_rate_limit"].default)).amount
RELAY_PER_CLIENT = parse(str(DEFAULTS["relay_rate_limit"].default)).amount
RELAY_PER_SIGNER = parse(str(DEFAULTS["relay_rate_limit_per_signer"].default)).amount


def _client_from(server: ApiServer, source: str, **kw: Any) -> httpx.Client:
    """An HTTP client whose requests come from ``source`` (another loopback address)."""
    transport = httpx.HTTPTransport(local_address=source)
    return httpx.Client(base_url=server.url, transport=transport, timeout=120, **kw)


def _ledger_client(server: ApiServer, source: str) -> LedgerClient:
    client = LedgerClient(server.url)
    client.http.close()
    client.http = _client_from(server, source)
    return client


def _assert_limited(response: httpx.Response, code: str = "rate-limited") -> None:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    assert response.json()["type"] == f"/problems/{code}", response.text
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 3600


def test_a_nonce_flood_is_refused_and_stores_nothing(server: ApiServer) -> None:
    rows_before = server.query("SELECT COUNT(*) FROM auth_nonces")[0][0]
    with _client_from(server, "127.0.0.1") as attacker:
        answers = [attacker.get("/v1/auth/nonce") for _ in range(4 * SIGN_IN_PER_CLIENT)]
        login_refused = attacker.post("/v1/auth/login", json={"message": "x", "signature": "0x00"})
    statuses = Counter(r.status_code for r in answers)
    assert set(statuses) == {200, 429}, statuses
    assert statuses[200] == SIGN_IN_PER_CLIENT, statuses
    assert all(r.status_code == 429 for r in answers[SIGN_IN_PER_CLIENT:])
    _assert_limited(answers[-1])
    assert login_refused.status_code == 429  # the login counts in the same window
    # Issuing a nonce wrote nothing: a flood cannot fill the database.
    assert server.query("SELECT COUNT(*) FROM auth_nonces")[0][0] == rows_before

    # Another client is not held back by the attacker; its sign-in records just the nonce it used.
    patient: LocalAccount = Account.create()
    with _ledger_client(server, "127.0.0.2") as bystander:
        body = bystander.login_body(patient)
        signed_in = bystander.http.post("/v1/auth/login", json=body)
        assert signed_in.status_code == 200, signed_in.text
        replayed = bystander.http.post("/v1/auth/login", json=body)
        assert replayed.status_code == 401 and "already used" in replayed.json()["detail"]
    assert server.query("SELECT COUNT(*) FROM auth_nonces")[0][0] == rows_before + 1


def test_relayed_messages_are_counted_per_signer_not_per_claimed_patient(server: ApiServer) -> None:
    victim = new_patient(server.rpc_url)
    forger: LocalAccount = Account.create()
    with LedgerClient(server.url) as client:
        # A forger signs messages in the victim's name with its own key, from many addresses: they
        # are refused as bad signatures, then limited as the forger's own; none uses up the victim's.
        for n in range(RELAY_PER_SIGNER + 5):
            body = client.grant_body(victim, CLINIC, nonce=0)
            forged_signature = Account.sign_typed_data(
                forger.key, full_message=client.typed("ConsentGrant", body["grant"])
            )
            body["signature"] = "0x" + bytes(forged_signature.signature).hex()
            with _client_from(server, f"127.0.1.{n + 1}") as source:
                forged = source.post("/v1/consents", json=body)
            assert forged.status_code == (400 if n < RELAY_PER_SIGNER else 429), forged.text
        answers = []
        for n in range(RELAY_PER_SIGNER + 2):
            body = client.grant_body(victim, CLINIC)  # the victim's own, each with its current nonce
            with _client_from(server, f"127.0.2.{n + 1}") as source:
                answers.append(source.post("/v1/consents", json=body))
    assert [r.status_code for r in answers[:RELAY_PER_SIGNER]] == [201] * RELAY_PER_SIGNER, [
        r.text for r in answers if r.status_code != 201
    ]
    for refused in answers[RELAY_PER_SIGNER:]:
        assert refused.status_code == 429, refused.text
        _assert_limited(refused)
        assert "per signer" in refused.json()["detail"]


@pytest.fixture(scope="module")
def slow_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """A chain with 2-second blocks: each relayed message waits for its block, as on Besu."""
    chain = Node(tmp_path_factory.mktemp("slow-chain"), block_time=2).start()
    yield chain
    chain.stop()


def test_a_relay_flood_is_limited_and_other_routes_stay_responsive(slow_node: Node, tmp_path: Path) -> None:
    assert slow_node.deployment is not None
    server = ApiServer(tmp_path / "api", slow_node.url, slow_node.deployment).start()
    try:
        with _ledger_client(server, "127.0.0.2") as setup:
            patient = new_patient(server.rpc_url)
            uploaded = setup.upload(server.token(CLINIC), patient.address, b"lab result")
            assert uploaded.status_code == 201, uploaded.text
            record_id = uploaded.json()["recordId"]
            granted = setup.grant(patient, CLINIC)
            assert granted.status_code == 201, granted.text
            # Fresh keys, each signing its first grant: every one is a valid message, a transaction to pay for.
            bodies = [setup.grant_body(Account.create(), CLINIC, nonce=0) for _ in range(150)]

        flood_done = threading.Event()
        answers: list[httpx.Response] = []

        def flood() -> None:
            with (
                _client_from(server, "127.0.0.1", limits=httpx.Limits(max_connections=100)) as attacker,
                ThreadPoolExecutor(max_workers=75) as pool,
            ):
                answers.extend(pool.map(lambda body: attacker.post("/v1/consents", json=body), bodies))
            flood_done.set()

        read_answer: list[tuple[float, int]] = []

        def provider_read() -> None:
            with _client_from(server, "127.0.0.3") as provider:
                started = time.monotonic()
                response = provider.get(
                    f"/v1/records/{record_id}", params={"purpose": "TREAT"}, headers=server.token(CLINIC)
                )
                read_answer.append((time.monotonic() - started, response.status_code))

        attack = threading.Thread(target=flood)
        attack.start()
        time.sleep(0.3)  # the flood's first wave is in
        reader = threading.Thread(target=provider_read)
        reader.start()
        health_times = []
        with _client_from(server, "127.0.0.4") as monitor:
            while not flood_done.is_set() or len(health_times) < 5:
                started = time.monotonic()
                assert monitor.get("/health").status_code == 200
                health_times.append(time.monotonic() - started)
                time.sleep(0.2)
        attack.join()
        reader.join()
    finally:
        server.stop()

    statuses = Counter(r.status_code for r in answers)
    assert set(statuses) <= {201, 429, 503}, [r.text for r in answers if r.status_code not in (201, 429, 503)][:3]
    assert statuses[429] > 0, statuses
    assert statuses[201] <= RELAY_PER_CLIENT, statuses
    for refused in answers:
        if refused.status_code in (429, 503):
            _assert_limited(refused, "rate-limited" if refused.status_code == 429 else "relay-busy")
    # While the flood ran, health answered at once and the provider's read (its own transaction) went through.
    assert max(health_times) < 1.0, health_times
    assert read_answer and read_answer[0][1] == 200, read_answer
    assert read_answer[0][0] < 8.0, read_answer
