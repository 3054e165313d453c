"""Adapters to the chain: JSON-RPC, transaction sending, the contract wrapper, events (docs/architecture.md)."""
