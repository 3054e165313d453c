"""The pure transparency log: RFC 9162 Merkle tree, disclosure entries and receipts (docs/architecture.md).

Imported by the operator's batching and by the auditor alike; no I/O here.
"""
