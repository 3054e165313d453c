"""RFC 9162 Merkle hashing and proofs against the Certificate Transparency reference vectors.

The vectors (the 8 leaves, the roots of sizes 0..8, and the inclusion/consistency proofs) are the ones
of Trillian's ``merkle/logverifier`` tests (also in certificate-transparency-go), which reproduce the
RFC 6962 reference implementation's test data; RFC 9162 keeps the same hashing.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger_service.transparency.merkle import (
    EMPTY_ROOT,
    MemoryLeafStore,
    MerkleLog,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)

LEAVES = [
    bytes.fromhex(h)
    for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f")
]
ROOTS = [
    bytes.fromhex(h)
    for h in (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]
HASHES = [leaf_hash(x) for x in LEAVES]


def _h(*hexes: str) -> list[bytes]:
    return [bytes.fromhex(h) for h in hexes]


# (leaf index, tree size, proof)
INCLUSION = [
    (0, 1, []),
    (
        0,
        8,
        _h(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        5,
        8,
        _h(
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (2, 3, _h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")),
    (
        1,
        5,
        _h(
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
]
# (old size, new size, proof)
CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        _h(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        6,
        8,
        _h(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (
        2,
        5,
        _h(
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
]


def test_empty_root_is_sha256_of_nothing() -> None:
    assert root_of([]) == EMPTY_ROOT == ROOTS[0]
    assert MerkleLog().root() == EMPTY_ROOT


@pytest.mark.parametrize("size", range(9))
def test_roots_match_the_reference(size: int) -> None:
    assert root_of(HASHES[:size]) == ROOTS[size]
    assert MerkleLog.of(LEAVES).root(size) == ROOTS[size]
    assert MerkleLog.of(LEAVES[:size]).root() == ROOTS[size]


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION)
def test_inclusion_vectors(index: int, size: int, proof: list[bytes]) -> None:
    assert inclusion_proof(index, HASHES[:size]) == proof
    assert MerkleLog.of(LEAVES).inclusion_proof(index, size) == proof
    verify_inclusion(index, size, HASHES[index], proof, ROOTS[size])


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY)
def test_consistency_vectors(old: int, new: int, proof: list[bytes]) -> None:
    assert consistency_proof(old, HASHES[:new]) == proof
    assert MerkleLog.of(LEAVES).consistency_proof(old, new) == proof
    verify_consistency(old, new, ROOTS[old], ROOTS[new], proof)


def _inclusion_corruptions(index: int, size: int, proof: list[bytes]) -> list[tuple[int, int, bytes, list[bytes]]]:
    """Trillian's corruptInclusionProof probes: wrong index, size, leaf, and every mangled path."""
    leaf = HASHES[index]
    probes = [
        (index - 1, size, leaf, proof),
        (index + 1, size, leaf, proof),
        (index ^ 2, size, leaf, proof),
        (index, size * 2, leaf, proof),
        (index, size // 2, leaf, proof),
        (index, size, leaf_hash(b"WrongLeaf"), proof),
        (index, size, leaf, [*proof, ROOTS[size]]),
        (index, size, leaf, [ROOTS[size], *proof]),
    ]
    for i in range(len(proof)):
        mangled = list(proof)
        mangled[i] = bytes([mangled[i][0] ^ 8]) + mangled[i][1:]
        probes.append((index, size, leaf, mangled))
    if proof:
        probes.append((index, size, leaf, proof[:-1]))
    return probes


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION[1:])
def test_corrupted_inclusion_proofs_fail(index: int, size: int, proof: list[bytes]) -> None:
    for probe_index, probe_size, leaf, probe in _inclusion_corruptions(index, size, proof):
        with pytest.raises(ProofError):
            verify_inclusion(probe_index, probe_size, leaf, probe, ROOTS[size])
    with pytest.raises(ProofError, match="expected 0x"):
        verify_inclusion(index, size, HASHES[index], proof, ROOTS[size - 1])


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY[1:])
def test_corrupted_consistency_proofs_fail(old: int, new: int, proof: list[bytes]) -> None:
    r1, r2 = ROOTS[old], ROOTS[new]
    probes = [
        (old - 1, new, r1, r2, proof),
        (old + 1, new, r1, r2, proof),
        (old ^ 2, new, r1, r2, proof),
        (old, new * 2, r1, r2, proof),
        (old, new // 2, r1, r2, proof),
        (old, new, leaf_hash(b"WrongRoot"), r2, proof),
        (old, new, r1, leaf_hash(b"WrongRoot"), proof),
        (old, new, r2, r1, proof),
        (old, new, r1, r2, []),
        (old, new, r1, r2, [*proof, r1]),
        (old, new, r1, r2, [r2, *proof]),
        (old, new, r1, r2, [proof[0], *proof]),
        (old, new, r1, r2, proof[:-1]),
    ]
    for i in range(len(proof)):
        mangled = list(proof)
        mangled[i] = bytes([mangled[i][0] ^ 16]) + mangled[i][1:]
        probes.append((old, new, r1, r2, mangled))
    for o, n, a, b, p in probes:
        with pytest.raises(ProofError):
            verify_consistency(o, n, a, b, p)


def test_trivial_and_impossible_consistency() -> None:
    verify_consistency(0, 5, EMPTY_ROOT, ROOTS[5], [])
    verify_consistency(3, 3, ROOTS[3], ROOTS[3], [])
    with pytest.raises(ProofError, match="fork"):
        verify_consistency(3, 3, ROOTS[3], ROOTS[4], [])
    with pytest.raises(ProofError, match="never shrinks"):
        verify_consistency(5, 3, ROOTS[5], ROOTS[3], [])
    with pytest.raises(ProofError, match="32 bytes"):
        verify_consistency(1, 2, b"short", ROOTS[2], [HASHES[1]])


def test_inclusion_bounds() -> None:
    with pytest.raises(ProofError, match="outside"):
        verify_inclusion(0, 0, HASHES[0], [], EMPTY_ROOT)
    with pytest.raises(ProofError, match="outside"):
        MerkleLog.of(LEAVES).inclusion_proof(8, 8)
    with pytest.raises(ProofError, match="outside"):
        MerkleLog.of(LEAVES).root(9)


def test_log_stores_only_completed_subtrees() -> None:
    store = MemoryLeafStore()
    log = MerkleLog(store)
    for entry in LEAVES[:7]:
        log.append(entry)
    assert [len(level) for level in store.levels] == [7, 3, 1]
    assert log.entry(3) == LEAVES[3] and log.leaf_hash(3) == HASHES[3]


entries = st.lists(st.binary(max_size=12), min_size=1, max_size=70)


@settings(max_examples=60, deadline=None)
@given(entries, st.data())
def test_every_inclusion_proof_verifies_and_any_alteration_fails(items: list[bytes], data: st.DataObject) -> None:
    log = MerkleLog.of(items)
    size = data.draw(st.integers(1, len(items)), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    root = log.root(size)
    proof = log.inclusion_proof(index, size)
    hashes = [leaf_hash(e) for e in items]
    assert proof == inclusion_proof(index, hashes[:size])
    assert root == root_of(hashes[:size])
    verify_inclusion(index, size, leaf_hash(items[index]), proof, root)
    if proof:
        at = data.draw(st.integers(0, len(proof) - 1), label="at")
        bit = data.draw(st.integers(0, 255), label="bit")
        mangled = list(proof)
        mangled[at] = bytes([mangled[at][bit // 8] ^ (1 << (bit % 8))]).join(
            [mangled[at][: bit // 8], mangled[at][bit // 8 + 1 :]]
        )
        with pytest.raises(ProofError):
            verify_inclusion(index, size, leaf_hash(items[index]), mangled, root)
        with pytest.raises(ProofError):
            verify_inclusion(index, size, leaf_hash(items[index]), proof[:-1], root)
    with pytest.raises(ProofError):
        verify_inclusion(index, size, leaf_hash(items[index] + b"x"), proof, root)


@settings(max_examples=60, deadline=None)
@given(entries, st.data())
def test_every_consistency_proof_verifies_and_any_alteration_fails(items: list[bytes], data: st.DataObject) -> None:
    log = MerkleLog.of(items)
    new = data.draw(st.integers(1, len(items)), label="new")
    old = data.draw(st.integers(1, new), label="old")
    proof = log.consistency_proof(old, new)
    assert proof == consistency_proof(old, [leaf_hash(e) for e in items[:new]])
    verify_consistency(old, new, log.root(old), log.root(new), proof)
    if proof:
        at = data.draw(st.integers(0, len(proof) - 1), label="at")
        mangled = list(proof)
        mangled[at] = bytes([mangled[at][0] ^ 1]) + mangled[at][1:]
        with pytest.raises(ProofError):
            verify_consistency(old, new, log.root(old), log.root(new), mangled)
        forked = MerkleLog.of([*items[: old - 1], items[old - 1] + b"fork", *items[old:new]])
        with pytest.raises(ProofError):
            verify_consistency(old, new, forked.root(old), log.root(new), proof)
