"""The node: a provider organization's own service. Its keys and signers, the encryption and anchoring
of uploads and amendments, and the reads with their disclosures (docs/architecture.md)."""
