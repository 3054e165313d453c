"""``consent-ledger``: the command line of the ledger (README, "The command line")."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ledger_service.errors import ConfigurationError, LedgerError


def _settings(args: argparse.Namespace, **overrides: Any) -> Any:
    from ledger_service.settings import Settings

    values: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    if getattr(args, "data_dir", None) is not None:
        values["data_dir"] = Path(args.data_dir)
    return Settings(**values)


def _print_deployment(deployment: Any) -> None:
    print(f"chain id        {deployment.chain_id}  ({deployment.rpc_url})")
    for name, address in deployment.contracts.items():
        print(f"{name:<15} {address}")
    print(f"deployed at     block {deployment.block_number}, tx {deployment.tx_hash}")
    demo = deployment.demo
    if demo:
        print("demo roles (anvil's default accounts):")
        print(f"  #0 admin, relayer and custodian  {demo['admin']}")
        for provider in demo["providers"]:
            extra = ", emergency access" if provider["emergency"] else ""
            print(f"  #{provider['index']} provider {provider['name']!r}{extra}  {provider['address']}")
        print(f"  #3 auditor                       {demo['auditor']}")
        for offset, patient in enumerate(demo["patients"]):
            print(f"  #{4 + offset} patient                       {patient}")


def _check_origins(settings: Any) -> None:
    """A server that cannot tell its own origin must not start (nor start a chain) first."""
    from ledger_service.origins import sign_in_origins, trusted_proxies

    sign_in_origins(settings)
    trusted_proxies(settings)


def _stop_on_signals() -> threading.Event:
    """Ctrl+C and SIGTERM only ask to stop, whenever they come: a chain must always be shut down cleanly so
    its state is saved (uvicorn takes the signals over while it serves)."""
    stop = threading.Event()

    def _interrupt(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    return stop


def cmd_up(args: argparse.Namespace) -> int:
    from ledger_service.runtime import Runtime

    settings = _settings(args, host=args.host, port=args.port, chain_port=args.chain_port)
    if not args.no_api:
        _check_origins(settings)
    stop = _stop_on_signals()
    with Runtime(settings) as runtime:
        _print_deployment(runtime.deployment)
        if args.no_api:
            print("chain ready; press Ctrl+C to stop (state is saved in the data dir)", flush=True)
            while not stop.wait(0.5):
                pass
        elif not stop.is_set():
            from consent_api.server import serve

            serve(runtime, stop)
    print("stopped; chain state saved", flush=True)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """One role alone (docs/architecture.md, "Three roles"): the hub, a provider's node or a key custodian."""
    from ledger_service.runtime import NodeRuntime, Runtime

    overrides: dict[str, Any] = {"host": args.host, "port": args.port, "role": args.role}
    if args.role == "custodian":
        return _serve_custodian(args, overrides)
    if args.role == "node" and args.hub_url:
        overrides["hub_url"] = args.hub_url
    settings = _settings(args, **overrides)
    _check_origins(settings)
    stop = _stop_on_signals()
    runtime: Runtime | NodeRuntime = NodeRuntime(settings) if args.role == "node" else Runtime(settings)
    with runtime:
        if args.role == "hub":
            _print_deployment(runtime.deployment)
        else:
            print(f"node of hub {settings.hub_url}, ledger {runtime.deployment.ledger_address}", flush=True)
        if not stop.is_set():
            from consent_api.server import serve

            serve(runtime, stop)
    print("stopped", flush=True)
    return 0


def _serve_custodian(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    from ledger_service.chain.deploy import Deployment
    from ledger_service.datadir import secure_data_dir

    if args.index is not None:
        overrides["custodian_index"] = args.index
    settings = _settings(args, **overrides)
    if not settings.deployment_file.exists():
        raise ConfigurationError(
            f"a custodian needs the ledger's deployment: copy the hub's deployment.json to {settings.deployment_file}"
        )
    secure_data_dir(settings.data_dir)
    stop = _stop_on_signals()
    from consent_api.server import serve_custodian

    serve_custodian(settings, Deployment.load(settings.deployment_file), stop)
    print("stopped", flush=True)
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    from ledger_service.runtime import Runtime

    settings = _settings(args, rpc_url=args.rpc_url, chain_port=args.chain_port)
    with Runtime(settings, redeploy=args.force) as runtime:
        _print_deployment(runtime.deployment)
    return 0


def cmd_cid(args: argparse.Namespace) -> int:
    from ledger_service.blobs import compute_cid

    path = Path(args.file)
    try:
        with path.open("rb") as handle:
            result = compute_cid(handle)
    except OSError as exc:
        print(f"consent-ledger cid: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 2
    print(str(result.cid))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="consent-ledger", description="Consent and record-audit ledger for healthcare"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def with_data_dir(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "--data-dir",
            default=os.environ.get("CONSENT_LEDGER_DATA_DIR", ".consent-ledger"),
            help="deployment, keys, DB and blobs (default ./.consent-ledger)",
        )
        return p

    up = with_data_dir(sub.add_parser("up", help="start the dev chain, deploy once, and serve API + portal"))
    up.add_argument("--host", default=None, help="API/portal host (default 127.0.0.1)")
    up.add_argument("--port", type=int, default=None, help="API/portal port (default 8000)")
    up.add_argument("--chain-port", type=int, default=None, help="anvil port (default 8545)")
    up.add_argument("--no-api", action="store_true", help="start only the chain (and deploy)")
    up.set_defaults(func=cmd_up)

    serve = with_data_dir(sub.add_parser("serve", help="serve one role alone: the hub, or a provider's node"))
    serve.add_argument(
        "role",
        choices=("hub", "node", "custodian"),
        help="hub: relay, blobs, index, portal; node: a provider's; custodian: one key custodian",
    )
    serve.add_argument("--host", default=None, help="host (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8000)")
    serve.add_argument("--hub-url", default=None, help="node: the hub's base URL (or CONSENT_LEDGER_HUB_URL)")
    serve.add_argument(
        "--index", type=int, default=None, help="custodian: its index (or CONSENT_LEDGER_CUSTODIAN_INDEX)"
    )
    serve.set_defaults(func=cmd_serve)

    deploy = with_data_dir(sub.add_parser("deploy", help="deploy the contracts and record them in the data dir"))
    deploy.add_argument("--rpc-url", default=None, help="an EVM JSON-RPC URL (default: a local anvil)")
    deploy.add_argument("--chain-port", type=int, default=None)
    deploy.add_argument("--force", action="store_true", help="deploy anew even if a live deployment is recorded")
    deploy.set_defaults(func=cmd_deploy)

    cid = with_data_dir(sub.add_parser("cid", help="print the CID the blob store assigns to a file's bytes"))
    cid.add_argument("file")
    cid.set_defaults(func=cmd_cid)

    from ledger_service.admin_cli import add_admin_commands
    from ledger_service.audit.cli import add_audit_commands

    add_audit_commands(sub)
    add_admin_commands(sub, with_data_dir)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except LedgerError as exc:
        print(f"consent-ledger {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
