"""The key custodian role (docs/architecture.md, "Key custody"): holds share ``i`` of every record version's
data key and releases it only against the chain. ``consent-ledger serve custodian`` runs one."""
