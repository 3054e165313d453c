"""Where the API is reached: the origins sign-in messages may name, and the proxies it believes.

A Sign-In with Ethereum message names the site it was signed on. The server compares that
with origins from its settings, never with the request's Host or X-Forwarded-* headers: a
phishing site posting a message signed for itself with ``Host: evil.example`` must not get a
token (docs/operations.md, "Public origin and proxies").
"""

from __future__ import annotations

import ipaddress
from typing import Final
from urllib.parse import urlsplit

from ledger_service.errors import ConfigurationError
from ledger_service.settings import Settings

# Addresses that mean "listen everywhere": the origin clients use cannot be derived from them.
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})  # noqa: S104 - compared against, not bound
DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_origin(value: str, *, setting: str) -> str:
    """``scheme://host[:port]`` in the form a browser reports it (lower case, no default port)."""
    parts = urlsplit(value.strip())
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (
        parts.scheme not in DEFAULT_PORTS
        or not parts.hostname
        or parts.username is not None
        or parts.password is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or port == -1
    ):
        raise ConfigurationError(
            f"{setting} must be an origin such as https://ledger.example.org (scheme, host and optional port, "
            f"no path), not {repr(value) if '@' not in value else 'a URL with credentials'}"
        )
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if port in (None, DEFAULT_PORTS[parts.scheme]) else f"{host}:{port}"
    return f"{parts.scheme}://{netloc}"


LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "::1", "[::1]", "localhost"})


def sign_in_origins(settings: Settings) -> tuple[str, ...]:
    """The origins a sign-in message may name: the public origin (on the embedded dev chain, by
    default the address the API serves) and the allowed origins. Raises ConfigurationError when
    there is none to name."""
    allowed = [normalize_origin(o, setting="CONSENT_LEDGER_ALLOWED_ORIGINS") for o in settings.allowed_origins]
    primary: list[str] = []
    if settings.public_origin:
        primary.append(normalize_origin(settings.public_origin, setting="CONSENT_LEDGER_PUBLIC_ORIGIN"))
    elif not settings.embedded_chain:
        if not allowed:
            raise ConfigurationError(
                "CONSENT_LEDGER_PUBLIC_ORIGIN is required with an external rpc_url: set it to the origin clients "
                "use (https://ledger.example.org); sign-in messages must name it"
            )
    elif settings.host in WILDCARD_HOSTS:
        if not allowed:
            raise ConfigurationError(
                f"the API listens on every address ({settings.host or 'all'}), so the origin clients use is "
                "unknown: set CONSENT_LEDGER_PUBLIC_ORIGIN"
            )
    else:
        host = f"[{settings.host}]" if ":" in settings.host and not settings.host.startswith("[") else settings.host
        primary.append(normalize_origin(f"http://{host}:{settings.port}", setting="CONSENT_LEDGER_HOST/PORT"))
        if settings.host in LOOPBACK_HOSTS:
            # The same server under its name: passkeys need a domain for their site (WebAuthn refuses an IP
            # address), and localhost is the one a loopback address always has.
            primary.append(f"http://localhost:{settings.port}")
    return tuple(dict.fromkeys(primary + allowed))


def portal_url(settings: Settings) -> str:
    """Where a person opens the portal: by name on a loopback address when sign-in accepts it (passkeys need a
    name), else the first origin sign-in messages may name."""
    origins = sign_in_origins(settings)
    named = f"http://localhost:{settings.port}"
    return (named if named in origins else origins[0]) + "/"


def trusted_proxies(settings: Settings) -> tuple[str, ...]:
    """The peers whose X-Forwarded-For/-Proto the server believes (addresses or networks); none by default."""
    proxies = []
    for entry in settings.trusted_proxies:
        text = entry.strip()
        try:
            proxies.append(str(ipaddress.ip_network(text, strict=False) if "/" in text else ipaddress.ip_address(text)))
        except ValueError:
            raise ConfigurationError(
                f"CONSENT_LEDGER_TRUSTED_PROXIES entries must be IP addresses or networks (10.0.0.5, 10.0.0.0/24), "
                f"not {entry!r}"
            ) from None
    return tuple(proxies)
