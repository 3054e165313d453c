"""The pure Ethereum codec: ABI words, EIP-712, log decoding, transaction signing (docs/architecture.md).

No I/O: nothing here opens a socket, a file or a database.
"""
