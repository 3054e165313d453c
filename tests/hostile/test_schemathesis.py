"""Property-based fuzzing of the OpenAPI (schemathesis, in-process ASGI): no 5xx, responses match their schemas.

schemathesis 4.32's ``schemathesis.pytest.from_fixture`` fails on pytest 9 (``'Function' object has no
attribute '_nodeid'``), so the schema is loaded inside the test and each operation's strategy is driven
by Hypothesis directly. Examples are bounded so the whole run stays well under a minute.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from consent_api.app import create_app
from ledger_service.bootstrap import bootstrap
from tests.conftest import Chain

pytestmark = pytest.mark.integration

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "40"))
# The fuzzer sends every example from one client: limits high enough that sign-in and the relays
# are fuzzed through, not refused with 429 after their first examples.
FUZZ_LIMITS = {
    name: f"{100 * MAX_EXAMPLES}/minute"
    for name in (
        "auth_rate_limit",
        "auth_rate_limit_global",
        "relay_rate_limit",
        "relay_rate_limit_per_signer",
        "relay_rate_limit_global",
    )
}


def _fuzzer(operation: object, auth: str) -> object:
    @given(case=operation.as_strategy())  # type: ignore[attr-defined]
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: schemathesis.Case) -> None:
        case.call_and_validate(
            headers={"Authorization": auth}, checks=[not_a_server_error, response_schema_conformance]
        )

    return fuzz


def test_no_server_errors_and_responses_match_their_schema(chain: Chain, tmp_path: Path) -> None:
    services = bootstrap(chain.settings_for(tmp_path / "svc", **FUZZ_LIMITS), chain.deployment)
    try:
        schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(services))
        tokens = {
            who: f"Bearer {services.auth.issue_token(account.address)[0]}"
            for who, account in (("auditor", chain.auditor), ("provider", chain.clinic))
        }
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) > 15, [op.label for op in operations]
        failures: list[str] = []
        for operation in operations:
            auth = tokens["auditor" if operation.path.startswith("/v1/audit") else "provider"]
            try:
                _fuzzer(operation, auth)()  # type: ignore[operator]
            except Exception as exc:  # collect every operation's failure, then report them all
                failures.append(f"{operation.label}: {str(exc)[:1500]}")
        assert not failures, "\n\n".join(failures)
    finally:
        services.close()
