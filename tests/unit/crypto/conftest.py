"""Shared fixtures for the crypto tests."""

from __future__ import annotations

import pytest

from ledger_service.crypto import RecordBinding

PATIENT = "0x52908400098527886E0F7030069857D2E4169EE7"  # EIP-55 checksummed spelling


@pytest.fixture
def binding() -> RecordBinding:
    return RecordBinding(record_id=bytes(range(32)), version=3, patient=PATIENT)
