"""What the record stories of the node and the hub share, below both roles (docs/architecture.md): the
per-record locks, the disclosure strategy a read takes, and the checks both sides of a read make."""
