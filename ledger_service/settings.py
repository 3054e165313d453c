"""Service settings: ``CONSENT_LEDGER_*`` environment variables, or a TOML settings file.

With no configuration at all the embedded default applies (docs/architecture.md; README, "Quick start"): a local anvil
with its state in the data dir, the embedded blob store and SQLite under the same dir.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

# anvil's well-known development mnemonic accounts ("test test ... junk"); only ever used
# when the service itself starts a dev chain, never against an external RPC URL.
ANVIL_DEV_KEYS: tuple[str, ...] = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
)


class Settings(BaseSettings):
    """Every knob of the service. Secrets are ``SecretStr`` so they never print."""

    model_config = SettingsConfigDict(env_prefix="CONSENT_LEDGER_", extra="ignore")

    data_dir: Path = Field(default=Path(".consent-ledger"), description="Holds the deployment, keys, DB and blobs")
    settings_file: Path | None = Field(default=None, description="Optional TOML file with these same keys")

    # API
    host: str = "127.0.0.1"
    port: int = 8000
    public_origin: str | None = Field(
        default=None,
        description="Origin clients use (https://ledger.example.org); sign-in messages must name it. "
        "Unset: http://{host}:{port} on the dev chain; required with an external rpc_url (ledger_service/origins.py)",
    )
    allowed_origins: list[str] = Field(
        default_factory=list, description="Further origins sign-in messages may name (http://localhost:8000)"
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Proxy addresses or networks whose X-Forwarded-For/-Proto are believed; none by default",
    )
    cors_origins: list[str] = Field(default_factory=list, description="Origins allowed cross-site; none by default")
    # Metrics are served by a listener of their own, never by the public API (docs/operations.md, "Monitoring")
    metrics_host: str = Field(default="127.0.0.1", description="Address of the metrics listener (GET /metrics)")
    metrics_port: int | None = Field(
        default=None, ge=0, le=65535, description="Port of the metrics listener; unset = port + 1, 0 = no listener"
    )
    metrics_token: SecretStr | None = Field(
        default=None, description="Bearer token the metrics listener requires; unset = none (it is on loopback)"
    )

    # Chain
    rpc_url: str | None = Field(default=None, description="External JSON-RPC URL; unset = start a local anvil")
    chain_host: str = "127.0.0.1"
    chain_port: int = 8545
    chain_id: int = 31337
    block_time: int | None = Field(default=None, description="anvil --block-time; unset = mine on demand")
    deployer_key: SecretStr | None = Field(default=None, description="Admin key that deploys; dev chain: anvil #0")
    relayer_key: SecretStr | None = Field(
        default=None, description="Relayer key (pays gas, anchors batch roots); dev chain: anvil #0"
    )
    provider_keys: SecretStr | None = Field(
        default=None,
        description="Comma-separated keys of the providers this node signs for (a node's setting: the hub refuses it)",
    )

    # Roles (docs/architecture.md, "Three roles")
    role: Literal["all", "hub", "node", "custodian"] = Field(
        default="all",
        description="all: hub and node in one process (`up`); hub, node or custodian alone (`serve ROLE`)",
    )
    hub_url: str | None = Field(
        default=None, description="A node's hub: the base URL of its POST /v1/relay and /v1/blobs"
    )
    confirmations: int = Field(default=0, ge=0, description="Blocks after which chain data is final")

    # Key custody (docs/architecture.md, "Key custody")
    custodian_index: int | None = Field(
        default=None, ge=1, le=255, description="A custodian's own index, 1 to custody_total (`serve custodian`)"
    )
    custody_threshold: int = Field(default=2, ge=2, le=255, description="Shares needed to rebuild a data key")
    custody_total: int = Field(default=3, ge=2, le=255, description="Custodians, one share each")
    custodian_ports_from: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="`up`: the first embedded custodian's port; unset = port + 10; 0 = any free ports",
    )
    custodian_urls: list[str] = Field(
        default_factory=list,
        description="A node's key custodians (base URLs); unset in the embedded default, which runs its own",
    )
    receipt_timeout: float = Field(default=60.0, gt=0)
    rpc_timeout: float = Field(default=10.0, gt=0)

    # Storage
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; unset = SQLite in the data dir")
    blob_store_url: str | None = Field(default=None, description="Kubo RPC URL; unset = embedded store")

    # Disclosures
    disclosure_mode: Literal["per-read", "batched"] = Field(
        default="per-read",
        description="per-read: one logAccess transaction per release; batched: a local Merkle log anchored on chain",
    )
    batch_size: int = Field(default=64, ge=1, description="Batched mode: anchor the log's root every N entries")
    batch_interval: float = Field(
        default=30.0, gt=0, description="Batched mode: ... or once the oldest unanchored entry is T seconds old"
    )

    # Idempotency (docs/security.md, "Idempotent reads")
    idempotency_ttl: float = Field(
        default=24 * 3600.0,
        gt=600,
        description="Seconds an Idempotency-Key is remembered from the request that claimed it; then it is new",
    )

    # Limits (docs/operations.md, "Request body limits"): each route's is chosen before its body is read.
    max_json_body: int = Field(
        default=32 * 1024 * 1024,
        ge=64 * 1024,
        description="Record uploads and amendments as JSON, and FHIR JSON files however sent (parsed whole)",
    )
    max_upload_bytes: int = Field(
        default=2 * 1024 * 1024 * 1024, ge=1024, description="Multipart record uploads of other files (streamed)"
    )
    # The largest legitimate body on the other routes is a sign-in: an EIP-4361 message of at most 8192
    # characters of ASCII text (each line break escaped as two bytes in JSON) and a signature of at most
    # 2050, ~10.5 KB in all. An emergency reason (2000 characters) takes 12 KB even \u-escaped; the
    # signed consent and delegate messages take under 1 KB.
    max_small_body: int = Field(
        default=16 * 1024,
        ge=1024,
        description="Every other route: sign-in, relayed consent and delegate messages, emergency reasons",
    )
    parse_workers: int = Field(
        default=2, ge=1, description="Processes that parse large JSON uploads off the API's event loop"
    )

    # Rate limits, in the `limits` notation ("30/minute", "5/second"; docs/operations.md, "Rate limits").
    # Each API process counts its own requests, in memory.
    auth_rate_limit: str = Field(default="60/minute", description="Sign-in requests (nonce, login) per client address")
    auth_rate_limit_global: str = Field(default="1200/minute", description="Sign-in requests of all clients together")
    relay_rate_limit: str = Field(default="30/minute", description="Relayed messages per client address")
    relay_rate_limit_per_signer: str = Field(default="10/minute", description="Relayed messages per signing patient")
    relay_rate_limit_global: str = Field(default="300/minute", description="Relayed messages of all clients together")
    relay_concurrency: int = Field(
        default=16, ge=1, description="Relayed messages waiting for their transactions at once; more are refused (503)"
    )
    relay_revert_suspension: float = Field(
        default=3600.0,
        ge=0,
        description="Seconds a contract account is refused relays (429) after its relayed transaction reverted on "
        "chain though its eth_call check passed (docs/security.md, 'Passkey sign-in and relay griefing')",
    )

    @field_validator(
        "auth_rate_limit", "auth_rate_limit_global", "relay_rate_limit", "relay_rate_limit_per_signer",
        "relay_rate_limit_global",
    )  # fmt: skip
    @classmethod
    def _rate_limit_notation(cls, value: str) -> str:
        from limits import parse

        parse(value)  # ValueError names the string it could not read
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        import os

        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        settings_file = os.environ.get("CONSENT_LEDGER_SETTINGS_FILE")
        if settings_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(settings_file)))
        return tuple(sources)

    # ------------------------------------------------------------- derived

    @property
    def embedded_chain(self) -> bool:
        return self.rpc_url is None

    @property
    def effective_rpc_url(self) -> str:
        return self.rpc_url or f"http://{self.chain_host}:{self.chain_port}"

    @property
    def deployment_file(self) -> Path:
        return self.data_dir / "deployment.json"

    @property
    def anvil_state_file(self) -> Path:
        return self.data_dir / "chain" / "anvil-state.json"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def custodian_key_file(self) -> Path:
        return self.data_dir / "keys" / "custodian-key.json"

    @property
    def custodian_store_file(self) -> Path:
        return self.data_dir / "custodian.sqlite3"

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'ledger.sqlite3').resolve()}"

    def admin_key(self) -> str:
        if self.deployer_key is not None:
            return self.deployer_key.get_secret_value()
        if self.embedded_chain:
            return ANVIL_DEV_KEYS[0]
        from ledger_service.errors import ConfigurationError

        raise ConfigurationError("CONSENT_LEDGER_DEPLOYER_KEY is required with an external rpc_url")

    def custodian_key(self) -> str:
        if self.relayer_key is not None:
            return self.relayer_key.get_secret_value()
        if self.embedded_chain:
            return ANVIL_DEV_KEYS[0]
        from ledger_service.errors import ConfigurationError

        raise ConfigurationError("CONSENT_LEDGER_RELAYER_KEY is required with an external rpc_url")
