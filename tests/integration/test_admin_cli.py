"""`consent-ledger admin ...`, `export-car` and KEK rotation against a running dev chain."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from sqlalchemy import select

from ledger_service.blobs import Cid
from ledger_service.blobs.car import read_car
from ledger_service.bootstrap import Services, bootstrap
from ledger_service.cli import main
from ledger_service.db.models import CommitmentSaltRow
from ledger_service.runtime import Runtime
from ledger_service.settings import Settings
from tests.conftest import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Runtime, Services]]:
    data_dir = tmp_path_factory.mktemp("admin")
    settings = Settings(data_dir=data_dir, chain_port=free_port())
    with Runtime(settings) as runtime:
        services = bootstrap(settings, runtime.deployment)
        yield runtime, services
        services.close()


def _cli(runtime: Runtime, *args: str) -> int:
    return main([args[0], "--data-dir", str(runtime.settings.data_dir), *args[1:]])


def test_onboard_suspend_reinstate_and_roles(
    running: tuple[Runtime, Services], capsys: pytest.CaptureFixture[str]
) -> None:
    runtime, services = running
    newcomer = Account.create().address
    assert _cli(runtime, "admin", "onboard-provider", newcomer, "--name", "Night Clinic", "--emergency") == 0
    assert "onboard-provider: tx 0x" in capsys.readouterr().out
    assert services.ledger.is_active_provider(newcomer)
    assert services.ledger.provider_name(newcomer) == "Night Clinic"
    assert {"provider", "emergency"} <= set(services.ledger.roles_of(newcomer))
    assert _cli(runtime, "admin", "suspend-provider", newcomer) == 0
    assert not services.ledger.is_active_provider(newcomer)
    assert _cli(runtime, "admin", "reinstate-provider", newcomer) == 0
    assert services.ledger.is_active_provider(newcomer)
    assert _cli(runtime, "admin", "grant-role", "auditor", newcomer) == 0
    assert "auditor" in services.ledger.roles_of(newcomer)
    assert _cli(runtime, "admin", "register-category", "genomics") == 0
    assert "genomics" in services.categories()


def test_admin_refusals_are_clear(running: tuple[Runtime, Services], capsys: pytest.CaptureFixture[str]) -> None:
    runtime, _ = running
    assert _cli(runtime, "admin", "register-category", "laboratory") == 1
    assert "CategoryAlreadyRegistered" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _cli(runtime, "admin", "suspend-provider", "not-an-address")


def test_rotate_kek_rewraps_every_key_and_records_still_read(running: tuple[Runtime, Services]) -> None:
    runtime, services = running
    clinic = runtime.deployment.demo["providers"][0]["address"]
    patient = runtime.deployment.demo["patients"][0]
    created = services.uploads.create(
        provider=clinic, patient=patient, category="laboratory", media_type="text/plain", content=[b"ferritin 80"]
    )
    blob_before = services.blobs.read(Cid.parse(created.cid))
    with services.db.session() as s:
        old_keks = set(s.execute(select(CommitmentSaltRow.kek_id)).scalars())
    assert _cli(runtime, "admin", "rotate-kek") == 0
    with services.db.session() as s:
        new_keks = set(s.execute(select(CommitmentSaltRow.kek_id)).scalars())
    assert len(new_keks) == 1 and not new_keks & old_keks
    assert services.blobs.read(Cid.parse(created.cid)) == blob_before  # blobs untouched
    # A fresh instance (new custody handle) decrypts with the re-wrapped key.
    fresh = bootstrap(runtime.settings, runtime.deployment)
    try:
        emergency = fresh.reads.emergency_read(accessor=clinic, record_id=created.record_id, reason="rotation check")
        assert emergency.read_all() == b"ferritin 80"
    finally:
        fresh.close()


def test_export_car_writes_the_ciphertext_dag(running: tuple[Runtime, Services], tmp_path: Path) -> None:
    runtime, services = running
    clinic = runtime.deployment.demo["providers"][0]["address"]
    patient = runtime.deployment.demo["patients"][1]
    created = services.uploads.create(
        provider=clinic,
        patient=patient,
        category="imaging",
        media_type="application/dicom",
        content=[bytes(range(256)) * 4096],
    )
    out = tmp_path / "record.car"
    assert _cli(runtime, "export-car", created.record_id, "--out", str(out)) == 0
    roots, blocks = read_car(io.BytesIO(out.read_bytes()))
    assert [str(r) for r in roots] == [created.cid]
    assert len(blocks) == len(services.blobs.blocks_of(Cid.parse(created.cid)))
