"""The running installation: its chain (a child anvil, or an external RPC) and its deployment."""

from __future__ import annotations

import sys
from pathlib import Path
from types import TracebackType

import httpx
from eth_account import Account

from ledger_service.bootstrap import admin_ledger, admin_sender, rpc_client
from ledger_service.chain.anvil import AnvilProcess
from ledger_service.chain.deploy import (
    LEDGER_VERSION,
    Deployment,
    deploy_account_factory,
    deploy_ledger,
    deployment_is_live,
    onboard_demo,
)
from ledger_service.chain.rpc import RpcClient
from ledger_service.datadir import secure_data_dir
from ledger_service.errors import ConfigurationError
from ledger_service.settings import Settings


def _sqlite_files(settings: Settings) -> tuple[Path, ...]:
    """A SQLite DB and its journals, wherever the DB lives (normally in the data dir)."""
    url = settings.effective_database_url
    path = url.split("///", 1)[-1] if url.startswith("sqlite") else ""
    if not path or path == ":memory:":
        return ()
    db = Path(path)
    return tuple(db.with_name(db.name + suffix) for suffix in ("", "-wal", "-shm", "-journal"))


class Runtime:
    """Starts what the settings ask for and makes sure the contracts are deployed once."""

    def __init__(self, settings: Settings, *, redeploy: bool = False) -> None:
        self.settings = settings
        self.redeploy = redeploy
        self.anvil: AnvilProcess | None = None
        self._deployment: Deployment | None = None
        self.rpc: RpcClient | None = None

    @property
    def deployment(self) -> Deployment:
        if self._deployment is None:
            raise RuntimeError("runtime not started")
        return self._deployment

    def __enter__(self) -> Runtime:
        s = self.settings
        secure_data_dir(s.data_dir, extra_files=_sqlite_files(s))
        if s.embedded_chain:
            self.anvil = AnvilProcess(
                host=s.chain_host,
                port=s.chain_port,
                chain_id=s.chain_id,
                state_file=s.anvil_state_file,
                block_time=s.block_time,
                log_file=s.data_dir / "chain" / "anvil.log",
            ).start()
        try:
            self.rpc = rpc_client(s)
            self._deployment = self._ensure_deployment(self.rpc)
        except BaseException:
            self.close()
            raise
        return self

    def _ensure_deployment(self, rpc: RpcClient) -> Deployment:
        s = self.settings
        path = s.deployment_file
        if path.exists() and not self.redeploy:
            recorded = Deployment.load(path)
            if deployment_is_live(rpc, recorded):
                return recorded if recorded.has_account_factory else self._add_account_factory(rpc, recorded)
            if not s.embedded_chain:
                raise ConfigurationError(
                    f"{path} records a deployment that is not on {s.effective_rpc_url}; "
                    "use `deploy --force` to replace it"
                )
            print(
                f"note: the recorded deployment is not on the dev chain any more; deploying anew ({path})",
                file=sys.stderr,
            )
        custodian = Account.from_key(s.custodian_key()).address
        deployment = deploy_ledger(admin_sender(s, rpc), custodian)
        if s.embedded_chain:
            ledger = admin_ledger(s, deployment, rpc)
            deployment = Deployment(**{**deployment.__dict__, "demo": onboard_demo(ledger)})
        deployment.save(path)
        return deployment

    def _add_account_factory(self, rpc: RpcClient, recorded: Deployment) -> Deployment:
        """A deployment recorded before passkey accounts gets its PatientAccountFactory at this start, deployed
        with the deployer key (`up`, `deploy`); a hub started without that key refuses to start until
        `consent-ledger deploy` has added it (docs/operations.md, "Passkey accounts")."""
        s = self.settings
        try:
            sender = admin_sender(s, rpc)
        except ConfigurationError as exc:
            raise ConfigurationError(
                f"{s.deployment_file} names no PatientAccountFactory (it predates passkey accounts) and this "
                "process has no deployer key to add it: run `consent-ledger deploy` once with "
                "CONSENT_LEDGER_DEPLOYER_KEY, then start the hub again"
            ) from exc
        deployment = recorded.with_account_factory(deploy_account_factory(sender))
        deployment.save(s.deployment_file)
        print(f"note: deployed the passkey accounts' factory {deployment.account_factory}", file=sys.stderr)
        return deployment

    def close(self) -> None:
        if self.anvil is not None:
            self.anvil.stop()
            self.anvil = None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class NodeRuntime:
    """A provider's node of its own: it deploys nothing and runs no chain. It learns the deployment from its
    hub's ``GET /v1/chain`` and trusts it only once its own chain node shows the same chain id and the same
    contract code at that address (docs/operations.md, "A provider's own node")."""

    def __init__(self, settings: Settings) -> None:
        if settings.rpc_url is None:
            raise ConfigurationError("a node reads the chain through a node of its own: set CONSENT_LEDGER_RPC_URL")
        if not settings.hub_url:
            raise ConfigurationError("a node needs its hub: set CONSENT_LEDGER_HUB_URL")
        self.settings = settings
        self._deployment: Deployment | None = None

    @property
    def deployment(self) -> Deployment:
        if self._deployment is None:
            raise RuntimeError("runtime not started")
        return self._deployment

    def __enter__(self) -> NodeRuntime:
        s = self.settings
        secure_data_dir(s.data_dir, extra_files=_sqlite_files(s))
        assert s.hub_url is not None
        url = s.hub_url.rstrip("/") + "/v1/chain"
        try:
            response = httpx.get(url, timeout=s.rpc_timeout)
            response.raise_for_status()
            info = response.json()
            recorded = info["deployment"]
            deployment = Deployment(
                chain_id=int(info["chainId"]),
                rpc_url=s.effective_rpc_url,
                contracts=dict(info["contracts"]),
                block_number=int(recorded["blockNumber"]),
                block_hash="",
                deployer="",
                custodian="",
                tx_hash=str(recorded["txHash"]),
                code_hash=str(recorded["codeHash"]),
                ledger_version=int(recorded["ledgerVersion"]),
            )
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise ConfigurationError(f"cannot read the hub's deployment from {url}: {exc}") from exc
        if deployment.ledger_version != LEDGER_VERSION:
            raise ConfigurationError(f"the hub runs ledger version {deployment.ledger_version}, not {LEDGER_VERSION}")
        if not deployment_is_live(rpc_client(s), deployment):
            raise ConfigurationError(
                f"the hub's ledger {deployment.ledger_address} is not on this node's chain {s.effective_rpc_url} "
                "(another chain id, or other code at that address): refusing to sign for it"
            )
        self._deployment = deployment
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None
