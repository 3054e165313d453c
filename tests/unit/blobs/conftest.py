"""Deterministic, cheaply regenerated file contents shared by the blob unit tests.

The same generators were reimplemented in JavaScript to compute the known-answer vectors
(see test_blob_vectors.py), so they must not change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

import pytest

_PIECE = 1 << 20
_PATTERN = bytes(range(251)) * (_PIECE // 251 + 2)

ContentGenerator = Callable[[int], Iterator[bytes]]


def mod251(size: int) -> Iterator[bytes]:
    """Byte ``i`` of the file is ``i % 251`` (a period that never lines up with 256 KiB chunks)."""
    offset = 0
    while offset < size:
        take = min(size - offset, _PIECE)
        phase = offset % 251
        yield _PATTERN[phase : phase + take]
        offset += take


def sha256ctr(size: int) -> Iterator[bytes]:
    """``sha256(u64be(0)) || sha256(u64be(1)) || ...`` truncated to ``size``: incompressible, no repeats."""
    counter = 0
    offset = 0
    while offset < size:
        digests = b"".join(hashlib.sha256(n.to_bytes(8, "big")).digest() for n in range(counter, counter + 32768))
        counter += 32768
        piece = digests[: size - offset]
        yield piece
        offset += len(piece)


GENERATORS: dict[str, ContentGenerator] = {"mod251": mod251, "sha256ctr": sha256ctr}


@pytest.fixture
def content() -> dict[str, ContentGenerator]:
    return GENERATORS
