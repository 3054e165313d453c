"""RFC 9162 Merkle tree hashing, inclusion and consistency proofs, and an append-only log.

Hashing (RFC 9162 section 2.1.1): ``leaf = SHA-256(0x00 || data)``, ``node = SHA-256(0x01 || left || right)``;
the root of ``n > 1`` leaves splits at ``k``, the largest power of two smaller than ``n``; the empty tree's
root is ``SHA-256("")``.

The proof functions are pure: generation over a list of leaf hashes (``inclusion_proof``,
``consistency_proof``) and verification as RFC 9162 sections 2.1.3.2 and 2.1.4.2 specify
(``verify_inclusion``, ``verify_consistency``). Verification raises :class:`ProofError`, whose message
says what was expected and what was found. :class:`MerkleLog` is the efficient form for a growing log:
it keeps every perfect subtree's hash in a pluggable :class:`LeafStore`, so a root or a proof costs
``O(log n)`` hash lookups and ``O(log n)`` hashing, never a pass over the leaves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from ledger_service.errors import AuditError

HASH_SIZE: Final = 32
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()
_LEAF_PREFIX: Final = b"\x00"
_NODE_PREFIX: Final = b"\x01"


class ProofError(AuditError):
    """A Merkle proof does not verify (or its parameters are impossible)."""

    code = "merkle-proof-invalid"


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over already-hashed leaves."""
    n = len(leaf_hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaf_hashes[0]
    k = _split(n)
    return node_hash(root_of(leaf_hashes[:k]), root_of(leaf_hashes[k:]))


def root_of_entries(entries: Sequence[bytes]) -> bytes:
    return root_of([leaf_hash(e) for e in entries])


# ----------------------------------------------------------------- generation (RFC 9162 2.1.3.1, 2.1.4.1)


def inclusion_proof(index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]): the audit path of leaf ``index`` in the tree of ``leaf_hashes``."""
    n = len(leaf_hashes)
    if not 0 <= index < n:
        raise ProofError(f"leaf index {index} is outside a tree of size {n}")
    if n == 1:
        return []
    k = _split(n)
    if index < k:
        return [*inclusion_proof(index, leaf_hashes[:k]), root_of(leaf_hashes[k:])]
    return [*inclusion_proof(index - k, leaf_hashes[k:]), root_of(leaf_hashes[:k])]


def consistency_proof(old_size: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]): proves the tree of the first ``old_size`` leaves is a prefix of the whole."""
    n = len(leaf_hashes)
    if not 0 <= old_size <= n:
        raise ProofError(f"old size {old_size} is outside 0..{n}")
    if old_size in (0, n):
        return []
    return _subproof(old_size, leaf_hashes, True)


def _subproof(m: int, leaves: Sequence[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [root_of(leaves)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], complete), root_of(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), root_of(leaves[:k])]


# ----------------------------------------------------------------- verification (RFC 9162 2.1.3.2, 2.1.4.2)


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} must be {HASH_SIZE} bytes, got {len(value)}")


def root_from_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root an inclusion proof leads to, or :class:`ProofError` if its shape is wrong."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    _check_hash(leaf, "leaf hash")
    fn, sn, r = index, size - 1, leaf
    for position, p in enumerate(proof):
        _check_hash(p, f"proof[{position}]")
        if sn == 0:
            raise ProofError(f"inclusion proof for leaf {index} of {size} is too long: {len(proof)} hashes")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"inclusion proof for leaf {index} of {size} is too short: {len(proof)} hashes")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Raise :class:`ProofError` unless ``proof`` shows leaf hash ``leaf`` at ``index`` under ``root``."""
    _check_hash(root, "root")
    computed = root_from_inclusion(index, size, leaf, proof)
    if computed != root:
        raise ProofError(
            f"inclusion proof for leaf {index} of tree size {size} leads to root 0x{computed.hex()}, "
            f"expected 0x{root.hex()}"
        )


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> None:
    """Raise :class:`ProofError` unless tree (old_size, old_root) is a prefix of (new_size, new_root)."""
    _check_hash(old_root, "old root")
    _check_hash(new_root, "new root")
    if old_size < 0 or new_size < old_size:
        raise ProofError(f"tree size went from {old_size} to {new_size}: a log never shrinks")
    if old_size == new_size:
        if proof:
            raise ProofError(f"consistency proof between equal sizes {old_size} must be empty, got {len(proof)}")
        if old_root != new_root:
            raise ProofError(
                f"two roots for one tree size {old_size}: 0x{old_root.hex()} and 0x{new_root.hex()} (a fork)"
            )
        return
    if old_size == 0:
        if proof:
            raise ProofError(f"consistency proof from the empty tree must be empty, got {len(proof)} hashes")
        return
    if not proof:
        raise ProofError(f"consistency proof from size {old_size} to {new_size} is empty")
    for position, p in enumerate(proof):
        _check_hash(p, f"proof[{position}]")
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # an exact power of two: the old root is a node of the new tree
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError(f"consistency proof from {old_size} to {new_size} is too long: {len(proof)} hashes")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"consistency proof from {old_size} to {new_size} is too short: {len(proof)} hashes")
    if fr != old_root:
        raise ProofError(
            f"consistency proof from {old_size} to {new_size} leads to old root 0x{fr.hex()}, "
            f"expected 0x{old_root.hex()}"
        )
    if sr != new_root:
        raise ProofError(
            f"consistency proof from {old_size} to {new_size} leads to new root 0x{sr.hex()}, "
            f"expected 0x{new_root.hex()}"
        )


# ----------------------------------------------------------------- the append-only log


class LeafStore(Protocol):
    """Durable storage of a Merkle log: entries and the hashes of perfect subtrees.

    ``node(level, index)`` is the hash of the perfect subtree of ``2**level`` leaves starting at leaf
    ``index * 2**level`` (level 0 = leaf hashes). ``append`` must store an entry and the nodes it
    completes atomically.
    """

    def size(self) -> int: ...

    def entry(self, index: int) -> bytes: ...

    def node(self, level: int, index: int) -> bytes: ...

    def append(self, entry: bytes, nodes: Sequence[tuple[int, int, bytes]]) -> None: ...


@dataclass
class MemoryLeafStore:
    """A :class:`LeafStore` in memory (tests, the verifier's own recomputation)."""

    entries: list[bytes] = field(default_factory=list)
    levels: list[list[bytes]] = field(default_factory=list)

    def size(self) -> int:
        return len(self.entries)

    def entry(self, index: int) -> bytes:
        return self.entries[index]

    def node(self, level: int, index: int) -> bytes:
        return self.levels[level][index]

    def append(self, entry: bytes, nodes: Sequence[tuple[int, int, bytes]]) -> None:
        for level, index, digest in nodes:
            while len(self.levels) <= level:
                self.levels.append([])
            if index != len(self.levels[level]):
                raise AuditError(f"node ({level}, {index}) out of order: level has {len(self.levels[level])}")
            self.levels[level].append(digest)
        self.entries.append(entry)


class MerkleLog:
    """An append-only RFC 9162 log over a :class:`LeafStore`, with roots and proofs for any past size."""

    def __init__(self, store: LeafStore | None = None) -> None:
        self.store: LeafStore = store if store is not None else MemoryLeafStore()

    @classmethod
    def of(cls, entries: Sequence[bytes]) -> MerkleLog:
        log = cls()
        for entry in entries:
            log.append(entry)
        return log

    @property
    def size(self) -> int:
        return self.store.size()

    def append(self, entry: bytes) -> int:
        """Add an entry; returns its leaf index."""
        index = self.store.size()
        digest = leaf_hash(entry)
        nodes = [(0, index, digest)]
        level, position = 0, index
        while position & 1:  # this leaf completes the perfect subtree on its left at each odd position
            digest = node_hash(self.store.node(level, position - 1), digest)
            level += 1
            position >>= 1
            nodes.append((level, position, digest))
        self.store.append(entry, nodes)
        return index

    def entry(self, index: int) -> bytes:
        return self.store.entry(index)

    def leaf_hash(self, index: int) -> bytes:
        return self.store.node(0, index)

    def _range_hash(self, start: int, end: int) -> bytes:
        """MTH of leaves ``[start, end)``, where ``start`` is a multiple of a power of two >= the width."""
        width = end - start
        if width & (width - 1) == 0:
            level = width.bit_length() - 1
            return self.store.node(level, start >> level)
        k = _split(width)
        return node_hash(self._range_hash(start, start + k), self._range_hash(start + k, end))

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        self._check_size(size)
        return EMPTY_ROOT if size == 0 else self._range_hash(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        size = self.size if size is None else size
        self._check_size(size)
        if not 0 <= index < size:
            raise ProofError(f"leaf index {index} is outside a tree of size {size}")
        return self._path(index, 0, size)

    def _path(self, m: int, start: int, end: int) -> list[bytes]:
        n = end - start
        if n == 1:
            return []
        k = _split(n)
        if m < k:
            return [*self._path(m, start, start + k), self._range_hash(start + k, end)]
        return [*self._path(m - k, start + k, end), self._range_hash(start, start + k)]

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        new_size = self.size if new_size is None else new_size
        self._check_size(new_size)
        if not 0 <= old_size <= new_size:
            raise ProofError(f"old size {old_size} is outside 0..{new_size}")
        if old_size in (0, new_size):
            return []
        return self._subproof(old_size, 0, new_size, True)

    def _subproof(self, m: int, start: int, end: int, complete: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if complete else [self._range_hash(start, end)]
        k = _split(n)
        if m <= k:
            return [*self._subproof(m, start, start + k, complete), self._range_hash(start + k, end)]
        return [*self._subproof(m - k, start + k, end, False), self._range_hash(start, start + k)]

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self.size:
            raise ProofError(f"tree size {size} is outside 0..{self.size} (the log's size)")
