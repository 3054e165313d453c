"""The origins sign-in messages may name and the proxies believed, as read from the settings."""

from __future__ import annotations

import pytest

from ledger_service.errors import ConfigurationError
from ledger_service.origins import normalize_origin, portal_url, sign_in_origins, trusted_proxies
from ledger_service.settings import Settings


@pytest.mark.parametrize(
    ("configured", "expected"),
    [
        ("https://Ledger.Example.org", "https://ledger.example.org"),
        ("https://ledger.example.org:443/", "https://ledger.example.org"),  # as a browser reports it
        ("http://127.0.0.1:80", "http://127.0.0.1"),
        ("https://ledger.example.org:8443", "https://ledger.example.org:8443"),
        ("http://[::1]:8000", "http://[::1]:8000"),
    ],
)
def test_origins_take_the_form_browsers_report(configured: str, expected: str) -> None:
    assert normalize_origin(configured, setting="X") == expected


@pytest.mark.parametrize(
    "configured",
    [
        "ledger.example.org",
        "ftp://ledger.example.org",
        "https://ledger.example.org/portal",
        "https://a?b",
        "https://:1",
    ],
)
def test_what_is_not_an_origin_is_refused(configured: str) -> None:
    with pytest.raises(ConfigurationError, match="must be an origin"):
        normalize_origin(configured, setting="CONSENT_LEDGER_PUBLIC_ORIGIN")


def test_credentials_in_a_configured_origin_are_not_repeated_in_the_error() -> None:
    with pytest.raises(ConfigurationError) as refused:
        normalize_origin("https://admin:hunter2@ledger.example.org", setting="CONSENT_LEDGER_PUBLIC_ORIGIN")
    assert "hunter2" not in str(refused.value)


def test_dev_default_is_the_served_address_plus_allowed_origins() -> None:
    # On a loopback address the server is also reached by name: passkeys (WebAuthn) need a domain.
    assert sign_in_origins(Settings(port=9000)) == ("http://127.0.0.1:9000", "http://localhost:9000")
    allowed = Settings(port=9000, allowed_origins=["http://localhost:9000", "http://portal.test:9000"])
    assert sign_in_origins(allowed) == ("http://127.0.0.1:9000", "http://localhost:9000", "http://portal.test:9000")
    assert sign_in_origins(Settings(host="10.0.0.7", port=9000)) == ("http://10.0.0.7:9000",)
    assert portal_url(Settings(port=9000)) == "http://localhost:9000/"
    assert portal_url(Settings(public_origin="https://ledger.example.org")) == "https://ledger.example.org/"
    public = Settings(public_origin="https://ledger.example.org", allowed_origins=["https://ledger.example.net"])
    assert sign_in_origins(public) == ("https://ledger.example.org", "https://ledger.example.net")


def test_an_external_chain_needs_an_explicit_origin() -> None:
    with pytest.raises(ConfigurationError, match="CONSENT_LEDGER_PUBLIC_ORIGIN is required"):
        sign_in_origins(Settings(rpc_url="http://rpc.internal:8545"))
    explicit = Settings(rpc_url="http://rpc.internal:8545", allowed_origins=["https://ledger.example.org"])
    assert sign_in_origins(explicit) == ("https://ledger.example.org",)


def test_trusted_proxies_are_addresses_or_networks_only() -> None:
    assert trusted_proxies(Settings()) == ()
    assert trusted_proxies(Settings(trusted_proxies=["10.0.0.5", "10.1.0.0/16", "::1"])) == (
        "10.0.0.5",
        "10.1.0.0/16",
        "::1",
    )
    for entry in ("*", "nginx", "10.0.0.0/33"):
        with pytest.raises(ConfigurationError, match="IP addresses or networks"):
            trusted_proxies(Settings(trusted_proxies=[entry]))
