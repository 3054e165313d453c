"""`consent-ledger admin ...` (custodian key rotation included) and `export-car` against a running dev chain."""

from __future__ import annotations

import contextlib
import hashlib
import io
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account

from ledger_service.blobs import Cid
from ledger_service.blobs.car import read_car
from ledger_service.bootstrap import Services, bootstrap
from ledger_service.cli import main
from ledger_service.crypto.key_shares import seal_share
from ledger_service.custodian.long_term_key import CustodianKeyFile
from ledger_service.errors import KeyCustodyError
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


def _cli(runtime: Runtime, *args: str, data_dir: Path | None = None) -> int:
    """``consent-ledger ARGS`` in the runtime's data dir, or in ``data_dir`` (a custodian's, say)."""
    return main([args[0], "--data-dir", str(data_dir or runtime.settings.data_dir), *args[1:]])


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


def _custodian_rows(store_file: Path) -> str:
    """A digest of everything a custodian's store keeps (per-record keys, wrapped shares), read without writing."""
    with contextlib.closing(sqlite3.connect(f"file:{store_file}?mode=ro", uri=True)) as db:
        keys = db.execute("SELECT record_id, key FROM record_keys ORDER BY record_id").fetchall()
        shares = db.execute("SELECT record_id, version, author, wrapped FROM shares ORDER BY 1, 2, 3").fetchall()
    assert shares  # the uploads below deposited shares here
    return hashlib.sha256(repr((keys, shares)).encode()).hexdigest()  # a digest: the rows hold key material


def _emergency_read(services: Services, clinic: str, record_id: str) -> bytes:
    return services.reads.emergency_read(accessor=clinic, record_id=record_id, reason="key rotation check").read_all()


def test_rotate_custodian_key_reencrypts_nothing_and_records_still_read(
    running: tuple[Runtime, Services], capsys: pytest.CaptureFixture[str]
) -> None:
    runtime, services = running
    clinic = runtime.deployment.demo["providers"][0]["address"]
    patient = runtime.deployment.demo["patients"][0]
    custodian_dir = runtime.settings.data_dir / "custodians" / "1"
    key_file = custodian_dir / "keys" / "custodian-key.json"
    old = services.uploads.create(
        provider=clinic, patient=patient, category="laboratory", media_type="text/plain", content=[b"ferritin 80"]
    )
    blob_before = services.blobs.read(Cid.parse(old.cid))
    store_before = _custodian_rows(custodian_dir / "custodian.sqlite3")
    old_public = CustodianKeyFile(key_file).public_key
    capsys.readouterr()

    assert _cli(runtime, "admin", "rotate-custodian-key", data_dir=custodian_dir) == 0

    printed = re.search(r"new custodian key 0x([0-9a-f]{64})", capsys.readouterr().out)
    assert printed is not None
    new_public = bytes.fromhex(printed.group(1))
    assert new_public != old_public
    assert CustodianKeyFile(key_file).public_keys() == (old_public, new_public)  # the old one still opens deposits
    assert services.blobs.read(Cid.parse(old.cid)) == blob_before  # nothing re-encrypted: not the blob,
    assert _custodian_rows(custodian_dir / "custodian.sqlite3") == store_before  # nor the custodian's shares

    # A fresh instance: custodian 1 publishes its new key, and the node seals its deposits to it.
    fresh = bootstrap(runtime.settings, runtime.deployment)
    try:
        listing = fresh.custodian_listing()
        assert listing is not None
        assert {index: key for index, _url, key in listing[1]}[1] == new_public
        assert _emergency_read(fresh, clinic, old.record_id) == b"ferritin 80"
        rotated = fresh.uploads.create(
            provider=clinic, patient=patient, category="laboratory", media_type="text/plain", content=[b"ferritin 95"]
        )
        assert _emergency_read(fresh, clinic, rotated.record_id) == b"ferritin 95"
    finally:
        fresh.close()

    assert _cli(runtime, "admin", "rotate-custodian-key", "--retire-old", data_dir=custodian_dir) == 0
    assert f"retired 1 old custodian keys; current key 0x{new_public.hex()}" in capsys.readouterr().out
    assert CustodianKeyFile(key_file).public_keys() == (new_public,)

    # The shares custodian 1 took under its old key are kept under its per-record keys: they still read. Its old
    # key is gone (a share sealed to it no longer opens); a fresh node's deposits, sealed to the new one, do.
    fresh = bootstrap(runtime.settings, runtime.deployment)
    try:
        assert _emergency_read(fresh, clinic, old.record_id) == b"ferritin 80"
        assert _emergency_read(fresh, clinic, rotated.record_id) == b"ferritin 95"
        after = fresh.uploads.create(
            provider=clinic, patient=patient, category="laboratory", media_type="text/plain", content=[b"ferritin 99"]
        )
        assert _emergency_read(fresh, clinic, after.record_id) == b"ferritin 99"
        custodian = next(c for c in fresh.custodians if c.config.index == 1)
        slot = custodian.slot(bytes.fromhex(after.record_id.removeprefix("0x")), after.version)
        sealed_to_old = seal_share(bytes(32) + bytes([1]), slot, old_public)
        with pytest.raises(KeyCustodyError, match="not a key of this file"):
            custodian.keys.open_share(sealed_to_old, slot, old_public)
    finally:
        fresh.close()


def test_rotate_custodian_key_refuses_a_data_dir_without_one(
    running: tuple[Runtime, Services], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pointed at a node's data dir (or an empty one) by mistake, it says so and creates no key."""
    runtime, _ = running
    for data_dir in (runtime.settings.data_dir, tmp_path):
        capsys.readouterr()
        assert _cli(runtime, "admin", "rotate-custodian-key", data_dir=data_dir) == 1
        err = capsys.readouterr().err
        assert f"no custodian key in {data_dir}" in err
        assert str(data_dir / "keys" / "custodian-key.json") in err
        assert not (data_dir / "keys" / "custodian-key.json").exists()
        assert _cli(runtime, "admin", "rotate-custodian-key", "--retire-old", data_dir=data_dir) == 1
        assert "no custodian key in" in capsys.readouterr().err
        assert not (data_dir / "keys" / "custodian-key.json").exists()


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
