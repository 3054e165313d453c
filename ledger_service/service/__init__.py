"""The services: the stories of the product over the adapters (docs/architecture.md)."""
