"""The hub: the consortium operator's service. It relays signed consents, stores ciphertext, indexes
the chain, keeps the batched disclosure log, and serves patients (their records, erasure, accounting)
and auditors (docs/architecture.md)."""
