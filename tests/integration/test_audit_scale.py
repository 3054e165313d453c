"""`consent-ledger verify` on a clean trail of 200 records, 5 providers, 20 patients and 2,000
disclosures, all made through the service on a real anvil (issue 5's acceptance scale)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from ledger_service.bootstrap import Services, admin_ledger, bootstrap
from ledger_service.domain.codes import ZERO32, purpose_to_bytes32
from ledger_service.domain.consent import ConsentGrant, typed_data
from ledger_service.runtime import Runtime
from ledger_service.settings import Settings
from tests.conftest import free_port

pytestmark = pytest.mark.integration

PROVIDERS, PATIENTS, RECORDS, DISCLOSURES = 5, 20, 200, 2_000


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Runtime, Services, dict[str, int]]]:
    data_dir = tmp_path_factory.mktemp("audit-scale")
    extra = [Account.create() for _ in range(PROVIDERS - 2)]
    settings = Settings(data_dir=data_dir, chain_port=free_port(), provider_keys=",".join(a.key.hex() for a in extra))
    with Runtime(settings) as runtime:
        services = bootstrap(settings, runtime.deployment)
        admin = admin_ledger(settings, runtime.deployment, services.rpc)
        for index, account in enumerate(extra):
            services.rpc.request("anvil_setBalance", [account.address, hex(10**20)])
            admin.onboard_provider(account.address, f"Provider {index + 3}")
        providers = [p["address"] for p in runtime.deployment.demo["providers"]] + [a.address for a in extra]
        patients: list[LocalAccount] = [Account.create() for _ in range(PATIENTS)]
        for patient in patients:
            for provider in providers:
                grant = ConsentGrant(
                    patient.address,
                    provider,
                    ZERO32,
                    purpose_to_bytes32("TREAT"),
                    0,
                    0,
                    services.ledger.fresh_nonce(patient.address),
                    services.chain_time() + 600,
                )
                signed = Account.sign_typed_data(patient.key, full_message=typed_data(services.domain, grant))
                services.ledger.send_signed(grant, bytes(signed.signature))

        def upload(i: int) -> tuple[str, str]:
            provider = providers[i % PROVIDERS]
            created = services.uploads.create(
                provider=provider,
                patient=patients[i % PATIENTS].address,
                category="laboratory",
                media_type="text/plain",
                content=[f"result {i}: {'x' * (i % 97)}".encode()],
            )
            return created.record_id, provider

        with ThreadPoolExecutor(max_workers=8) as pool:
            records = list(pool.map(upload, range(RECORDS)))

        def read(i: int) -> int:
            record_id, _author = records[i % RECORDS]
            accessor = providers[(i // RECORDS) % PROVIDERS]
            return len(services.reads.read(accessor=accessor, record_id=record_id, purpose="TREAT").read_all())

        with ThreadPoolExecutor(max_workers=8) as pool:
            assert all(n > 0 for n in pool.map(read, range(DISCLOSURES)))
        services.close()
        yield runtime, services, {"records": RECORDS, "disclosures": DISCLOSURES}


def test_verify_passes_and_reports_what_it_checked(history: tuple[Runtime, Services, dict[str, int]]) -> None:
    runtime, _services, expected = history
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ledger_service.cli",
            "verify",
            "--data-dir",
            str(runtime.settings.data_dir),
            "--json",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout)
    summary = report["summary"]
    assert report["ok"] is True and summary["violations"] == 0
    assert summary["records"] == expected["records"]
    assert summary["disclosures"] == expected["disclosures"]
    assert summary["patients"] >= PATIENTS and summary["providers"] >= PROVIDERS
    assert report["checks"], "the report must say what was checked"


def test_summary_text_names_the_counts(history: tuple[Runtime, Services, dict[str, int]], tmp_path: Path) -> None:
    runtime, _services, _expected = history
    html = tmp_path / "report.html"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ledger_service.cli",
            "verify",
            "--data-dir",
            str(runtime.settings.data_dir),
            "--no-progress",
            "--html",
            str(html),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "2000" in done.stdout.replace(",", "") and "200" in done.stdout
    assert "<svg" in html.read_text()
