"""``consent-ledger admin ...`` and ``export-car``: the consortium admin's and operator's tools."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ledger_service.errors import ConfigurationError, ValidationError

ROLE_NAMES = ("provider", "auditor", "custodian", "emergency", "admin")


def _context(args: argparse.Namespace) -> tuple[Any, Any]:
    from ledger_service.chain.deploy import Deployment
    from ledger_service.settings import Settings

    settings = Settings(data_dir=Path(args.data_dir))
    if not settings.deployment_file.is_file():
        raise ConfigurationError(f"no deployment in {settings.data_dir}; run `consent-ledger up` or `deploy` first")
    return settings, Deployment.load(settings.deployment_file)


def _admin_ledger(args: argparse.Namespace) -> Any:
    from ledger_service.bootstrap import admin_ledger

    settings, deployment = _context(args)
    return admin_ledger(settings, deployment)


def _address(value: str) -> str:
    from eth_utils import is_address, to_checksum_address

    if not is_address(value):
        raise argparse.ArgumentTypeError(f"not an Ethereum address: {value!r}")
    return str(to_checksum_address(value))


def cmd_admin(args: argparse.Namespace) -> int:
    from ledger_service.domain.codes import ROLES

    if args.action == "rotate-custodian-key":
        return _rotate_custodian_key(args)
    ledger = _admin_ledger(args)
    if args.action == "onboard-provider":
        receipt = ledger.onboard_provider(args.address, args.name)
        if args.emergency:
            ledger.grant_role(ROLES["emergency"], args.address)
    elif args.action == "suspend-provider":
        receipt = ledger.suspend_provider(args.address)
    elif args.action == "reinstate-provider":
        receipt = ledger.reinstate_provider(args.address)
    elif args.action == "grant-role":
        receipt = ledger.grant_role(ROLES[args.role], args.address)
    elif args.action == "revoke-role":
        receipt = ledger.revoke_role(ROLES[args.role], args.address)
    elif args.action == "register-category":
        receipt = ledger.register_category(args.code)
    else:  # argparse restricts the choices
        raise ValidationError(f"unknown admin action {args.action}")
    print(f"{args.action}: tx {receipt.tx_hex} in block {receipt.block_number}")
    return 0


def _rotate_custodian_key(args: argparse.Namespace) -> int:
    """A custodian's new long-term key (docs/operations.md, "Rotating a custodian's key"). Nothing is re-encrypted:
    the shares it keeps are wrapped under its per-record keys; the old key opens deposits sealed before the
    rotation until it is retired."""
    from ledger_service.custodian.long_term_key import CustodianKeyFile
    from ledger_service.settings import Settings

    settings = Settings(data_dir=args.data_dir)
    path = settings.custodian_key_file
    if not path.is_file():
        raise ConfigurationError(f"no custodian key in {settings.data_dir} ({path} is missing): is it a custodian's?")
    keys = CustodianKeyFile(path)
    old = [kid for kid in keys.kek_ids() if kid != keys.current_kek_id]
    if args.retire_old:
        for kid in old:
            keys.retire(kid)
        print(f"retired {len(old)} old custodian keys; current key 0x{keys.public_key.hex()}")
        return 0
    keys.rotate()
    print(
        f"new custodian key 0x{keys.public_key.hex()} (restart the custodian to publish it); the old one still opens "
        "deposits in flight: retire it with --retire-old once none can arrive"
    )
    return 0


def cmd_export_car(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from ledger_service.blobs import Cid
    from ledger_service.bootstrap import blob_store, database
    from ledger_service.db.models import RecordVersionRow

    settings, _deployment = _context(args)
    db = database(settings)
    try:
        with db.session() as s:
            query = select(RecordVersionRow).where(RecordVersionRow.record_id == args.record.lower())
            if args.version:
                query = query.where(RecordVersionRow.version == args.version)
            row = s.execute(query.order_by(RecordVersionRow.version.desc())).scalars().first()
    finally:
        db.dispose()
    if row is None:
        print(
            f"consent-ledger export-car: no record {args.record} (version {args.version or 'latest'})", file=sys.stderr
        )
        return 1
    blobs = blob_store(settings)
    with Path(args.out).open("wb") as out:
        blobs.export_car(Cid.parse(row.cid), out)
    print(f"wrote {args.out}: the ciphertext of {args.record} v{row.version} ({row.cid}) as CAR v1")
    return 0


def add_admin_commands(sub: Any, with_data_dir: Any) -> None:
    admin = with_data_dir(
        sub.add_parser("admin", help="consortium administration (roles, providers, categories, keys)")
    )
    actions = admin.add_subparsers(dest="action", required=True)
    onboard = actions.add_parser("onboard-provider", help="grant PROVIDER_ROLE and record the provider's name")
    onboard.add_argument("address", type=_address)
    onboard.add_argument("--name", required=True)
    onboard.add_argument("--emergency", action="store_true", help="also grant EMERGENCY_ROLE (break-glass)")
    for name, text in (("suspend-provider", "suspend a provider"), ("reinstate-provider", "lift a suspension")):
        action = actions.add_parser(name, help=text)
        action.add_argument("address", type=_address)
    for name in ("grant-role", "revoke-role"):
        action = actions.add_parser(name, help=f"{name.split('-')[0]} a role")
        action.add_argument("role", choices=ROLE_NAMES)
        action.add_argument("address", type=_address)
    category = actions.add_parser("register-category", help="register a record category code")
    category.add_argument("code")
    rotate = actions.add_parser(
        "rotate-custodian-key", help="a custodian's new long-term key (nothing is re-encrypted); in its data dir"
    )
    rotate.add_argument("--retire-old", action="store_true", help="instead: retire the keys before the current one")
    admin.set_defaults(func=cmd_admin)

    car = with_data_dir(sub.add_parser("export-car", help="export a record version's ciphertext blocks as a CAR file"))
    car.add_argument("record", help="record id (0x...)")
    car.add_argument("--version", type=int, default=None, help="default: the latest")
    car.add_argument("--out", required=True, help="the .car file to write")
    car.set_defaults(func=cmd_export_car)
