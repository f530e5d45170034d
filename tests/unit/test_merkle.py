"""RFC 6962 Merkle trees: the published vectors, an independent reference, and tampering.

The reference functions below transcribe the recursive RFC 6962 definitions (MTH,
PATH, PROOF) with ``hashlib`` directly, so they share no code with the module under
test; the iterative implementation must agree with them for every small tree.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from typing import Any

import pytest

from mspauto.evidence.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    Frontier,
    Tree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

# --- Published vectors -------------------------------------------------------------
# Taken from github.com/transparency-dev/merkle at commit
# 417fb0c314750d94e53942e9f92e79b6d35915db:
#   testonly/constants.go   LeafInputs, NodeHashes, RootHashes, CompactTrees, EmptyRootHash
#   cmd/proofgen/main.go    inclusionProofs, consistencyProofs, sha256SomeHash (these
#                           lived in proof/verify_test.go until commit bcba819)
# Upstream numbers inclusion leaves from 1; RFC_INCLUSION_PROOFS below use 0-based indices.

RFC_LEAF_INPUTS = [
    bytes.fromhex(""),
    bytes.fromhex("00"),
    bytes.fromhex("10"),
    bytes.fromhex("2021"),
    bytes.fromhex("3031"),
    bytes.fromhex("40414243"),
    bytes.fromhex("5051525354555657"),
    bytes.fromhex("606162636465666768696a6b6c6d6e6f"),
]

# NodeHashes()[level][index]: every perfect subtree of the 8-leaf tree.
RFC_NODE_HASHES = [
    [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    ],
    [
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    ],
    [
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    [
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ],
]

# RootHashes()[size] for sizes 0..8.
RFC_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]

# CompactTrees()[size]: (level, index) into RFC_NODE_HASHES, largest subtree first.
RFC_COMPACT_TREES: list[list[tuple[int, int]]] = [
    [],
    [(0, 0)],
    [(1, 0)],
    [(1, 0), (0, 2)],
    [(2, 0)],
    [(2, 0), (0, 4)],
    [(2, 0), (1, 2)],
    [(2, 0), (1, 2), (0, 6)],
    [(3, 0)],
]

# (leaf index, tree size, proof)
RFC_INCLUSION_PROOFS: list[tuple[int, int, list[str]]] = [
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        3,
        ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    ),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]

# (old size, new size, proof)
RFC_CONSISTENCY_PROOFS: list[tuple[int, int, list[str]]] = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]

SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")

RFC_LEAVES = [leaf_hash(data) for data in RFC_LEAF_INPUTS]


def _hexes(hexes: Sequence[str]) -> list[bytes]:
    return [bytes.fromhex(h) for h in hexes]


# --- Reference: RFC 6962 section 2.1, transcribed recursively ------------------------


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _largest_power_of_two_below(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _reference_root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over already-hashed leaves."""
    if not leaves:
        return _sha256(b"")
    if len(leaves) == 1:
        return leaves[0]
    k = _largest_power_of_two_below(len(leaves))
    return _sha256(b"\x01" + _reference_root(leaves[:k]) + _reference_root(leaves[k:]))


def _reference_path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n])."""
    if len(leaves) <= 1:
        return []
    k = _largest_power_of_two_below(len(leaves))
    if m < k:
        return [*_reference_path(m, leaves[:k]), _reference_root(leaves[k:])]
    return [*_reference_path(m - k, leaves[k:]), _reference_root(leaves[:k])]


def _reference_subproof(m: int, leaves: Sequence[bytes], whole: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b)."""
    if m == len(leaves):
        return [] if whole else [_reference_root(leaves)]
    k = _largest_power_of_two_below(len(leaves))
    if m <= k:
        return [*_reference_subproof(m, leaves[:k], whole), _reference_root(leaves[k:])]
    return [*_reference_subproof(m - k, leaves[k:], False), _reference_root(leaves[:k])]


def _record_leaves(count: int, seed: str = "") -> list[bytes]:
    """Leaves as the evidence store makes them: leaf data is a record's SHA-256."""
    return [leaf_hash(_sha256(f"record {seed}{i}".encode())) for i in range(count)]


def _with_byte_flipped(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :]


def _proofs_with_one_byte_flipped(proof: Sequence[bytes]) -> list[list[bytes]]:
    return [
        [*proof[:i], _with_byte_flipped(node, position), *proof[i + 1 :]]
        for i, node in enumerate(proof)
        for position in range(len(node))
    ]


SMALL_LEAVES = _record_leaves(45)
SMALL_ROOTS = [_reference_root(SMALL_LEAVES[:n]) for n in range(len(SMALL_LEAVES) + 1)]
MAX_SMALL_SIZE = 40


# --- Hashing and roots against the published vectors ---------------------------------


def test_empty_root_is_sha256_of_nothing() -> None:
    assert bytes.fromhex(RFC_ROOTS[0]) == EMPTY_ROOT
    assert len(EMPTY_ROOT) == HASH_SIZE
    assert root([]) == EMPTY_ROOT
    assert Frontier().root() == EMPTY_ROOT


def test_leaf_and_node_hashes_match_the_published_subtree_hashes() -> None:
    level = RFC_LEAVES
    for expected in RFC_NODE_HASHES:
        assert [h.hex() for h in level] == expected
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]


@pytest.mark.parametrize("size", range(len(RFC_ROOTS)))
def test_roots_match_the_published_roots(size: int) -> None:
    frontier = Frontier()
    frontier.extend(RFC_LEAVES[:size])

    assert root(RFC_LEAVES[:size]).hex() == RFC_ROOTS[size]
    assert frontier.root().hex() == RFC_ROOTS[size]


@pytest.mark.parametrize("size", range(len(RFC_COMPACT_TREES)))
def test_frontier_holds_the_published_compact_range(size: int) -> None:
    frontier = Frontier()
    frontier.extend(RFC_LEAVES[:size])

    assert frontier.to_json() == {
        "size": size,
        "hashes": [RFC_NODE_HASHES[level][index] for level, index in RFC_COMPACT_TREES[size]],
    }


# --- Proofs against the published vectors --------------------------------------------


@pytest.mark.parametrize(("index", "size", "proof"), RFC_INCLUSION_PROOFS)
def test_inclusion_proof_matches_the_published_proof(
    index: int, size: int, proof: list[str]
) -> None:
    assert inclusion_proof(RFC_LEAVES, index, size) == _hexes(proof)
    assert verify_inclusion(
        RFC_LEAVES[index], index, size, _hexes(proof), bytes.fromhex(RFC_ROOTS[size])
    )


@pytest.mark.parametrize(("old_size", "new_size", "proof"), RFC_CONSISTENCY_PROOFS)
def test_consistency_proof_matches_the_published_proof(
    old_size: int, new_size: int, proof: list[str]
) -> None:
    assert consistency_proof(RFC_LEAVES, old_size, new_size) == _hexes(proof)
    assert verify_consistency(
        old_size,
        new_size,
        bytes.fromhex(RFC_ROOTS[old_size]),
        bytes.fromhex(RFC_ROOTS[new_size]),
        _hexes(proof),
    )


def _corrupted_inclusion_probes(
    index: int, size: int, proof: list[bytes], tree_root: bytes, leaf: bytes
) -> list[tuple[str, int, int, bytes, bytes, list[bytes]]]:
    """The failing probes upstream's proofgen derives from each inclusion vector."""
    probes = [
        ("leaf index - 1", index - 1, size, tree_root, leaf, proof),
        ("leaf index + 1", index + 1, size, tree_root, leaf, proof),
        ("leaf index ^ 2", index ^ 2, size, tree_root, leaf, proof),
        ("tree size * 2", index, size * 2, tree_root, leaf, proof),
        ("tree size // 2", index, size // 2, tree_root, leaf, proof),
        ("wrong leaf", index, size, tree_root, b"WrongLeaf", proof),
        ("empty root", index, size, EMPTY_ROOT, leaf, proof),
        ("random root", index, size, SOME_HASH, leaf, proof),
        ("trailing garbage", index, size, tree_root, leaf, [*proof, b""]),
        ("trailing root", index, size, tree_root, leaf, [*proof, tree_root]),
        ("preceding garbage", index, size, tree_root, leaf, [b"", *proof]),
        ("preceding root", index, size, tree_root, leaf, [tree_root, *proof]),
    ]
    for i, node in enumerate(proof):
        flipped = [*proof[:i], bytes([node[0] ^ 8]) + node[1:], *proof[i + 1 :]]
        probes.append((f"modified proof[{i}] bit 3", index, size, tree_root, leaf, flipped))
    if proof:
        probes.append(("removed component", index, size, tree_root, leaf, proof[:-1]))
    if len(proof) > 1:
        inserted = [proof[0], SOME_HASH, *proof[1:]]
        probes.append(("inserted component", index, size, tree_root, leaf, inserted))
    return probes


@pytest.mark.parametrize(("index", "size", "proof"), RFC_INCLUSION_PROOFS)
def test_corrupted_published_inclusion_proofs_fail(index: int, size: int, proof: list[str]) -> None:
    probes = _corrupted_inclusion_probes(
        index, size, _hexes(proof), bytes.fromhex(RFC_ROOTS[size]), RFC_LEAVES[index]
    )
    for description, probe_index, probe_size, probe_root, probe_leaf, probe_proof in probes:
        assert not verify_inclusion(probe_leaf, probe_index, probe_size, probe_proof, probe_root), (
            description
        )


def _corrupted_consistency_probes(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: list[bytes]
) -> list[tuple[str, int, int, bytes, bytes, list[bytes]]]:
    """The failing probes upstream's proofgen derives from each consistency vector."""
    probes = [
        ("old size - 1", old_size - 1, new_size, old_root, new_root, proof),
        ("old size + 1", old_size + 1, new_size, old_root, new_root, proof),
        ("old size ^ 2", old_size ^ 2, new_size, old_root, new_root, proof),
        ("new size * 2", old_size, new_size * 2, old_root, new_root, proof),
        ("new size // 2", old_size, new_size // 2, old_root, new_root, proof),
        ("wrong old root", old_size, new_size, b"WrongRoot", new_root, proof),
        ("wrong new root", old_size, new_size, old_root, b"WrongRoot", proof),
        ("swapped roots", old_size, new_size, new_root, old_root, proof),
        ("empty proof", old_size, new_size, old_root, new_root, []),
        ("trailing garbage", old_size, new_size, old_root, new_root, [*proof, b""]),
        ("trailing old root", old_size, new_size, old_root, new_root, [*proof, old_root]),
        ("trailing new root", old_size, new_size, old_root, new_root, [*proof, new_root]),
        ("preceding garbage", old_size, new_size, old_root, new_root, [b"", *proof]),
        ("preceding old root", old_size, new_size, old_root, new_root, [old_root, *proof]),
        ("preceding new root", old_size, new_size, old_root, new_root, [new_root, *proof]),
        ("preceding proof[0]", old_size, new_size, old_root, new_root, [proof[0], *proof]),
        ("truncated proof", old_size, new_size, old_root, new_root, proof[:-1]),
    ]
    for i, node in enumerate(proof):
        flipped = [*proof[:i], bytes([node[0] ^ 16]) + node[1:], *proof[i + 1 :]]
        probes.append(
            (f"modified proof[{i}] bit 4", old_size, new_size, old_root, new_root, flipped)
        )
    return probes


@pytest.mark.parametrize(
    ("old_size", "new_size", "proof"), [v for v in RFC_CONSISTENCY_PROOFS if v[2]]
)
def test_corrupted_published_consistency_proofs_fail(
    old_size: int, new_size: int, proof: list[str]
) -> None:
    probes = _corrupted_consistency_probes(
        old_size,
        new_size,
        bytes.fromhex(RFC_ROOTS[old_size]),
        bytes.fromhex(RFC_ROOTS[new_size]),
        _hexes(proof),
    )
    for description, probe_old, probe_new, probe_old_root, probe_new_root, probe_proof in probes:
        assert not verify_consistency(
            probe_old, probe_new, probe_old_root, probe_new_root, probe_proof
        ), description


# --- Frontier ------------------------------------------------------------------------


def test_frontier_root_is_the_tree_root_at_every_size_up_to_300() -> None:
    leaves = _record_leaves(300)
    frontier = Frontier()
    for size in range(len(leaves) + 1):
        expected = _reference_root(leaves[:size])
        assert frontier.size == size
        assert frontier.root() == expected, size
        assert root(leaves[:size]) == expected, size
        assert len(frontier.to_json()["hashes"]) <= size.bit_length()
        if size < len(leaves):
            frontier.append(leaves[size])


@pytest.mark.parametrize(
    "size", [511, 512, 513, 1000, 4095, 4096, *random.Random(6962).sample(range(301, 5000), 4)]
)
def test_frontier_root_is_the_tree_root_at_larger_sizes(size: int) -> None:
    leaves = _record_leaves(size)
    frontier = Frontier()
    frontier.extend(leaves)

    assert frontier.size == size
    assert frontier.root() == _reference_root(leaves)
    assert root(leaves) == frontier.root()


def test_appending_one_at_a_time_equals_extending() -> None:
    leaves = _record_leaves(77)
    one_by_one, at_once = Frontier(), Frontier()
    for leaf in leaves:
        one_by_one.append(leaf)
    at_once.extend(iter(leaves))

    assert one_by_one.to_json() == at_once.to_json()


def test_frontier_rejects_a_leaf_that_is_not_a_hash() -> None:
    frontier = Frontier()
    frontier.extend(SMALL_LEAVES[:3])

    with pytest.raises(ValueError, match=r"^leaf 3 is 5 bytes, expected a 32-byte leaf hash$"):
        frontier.append(b"short")
    with pytest.raises(ValueError, match=r"^leaf 4 is 33 bytes"):
        frontier.extend([SMALL_LEAVES[3], b"x" * 33, SMALL_LEAVES[4]])
    # The leaves before the bad one stay; the tree is still the right tree.
    assert frontier.size == 4
    assert frontier.root() == SMALL_ROOTS[4]


def test_frontier_json_round_trip_keeps_growing_the_same_tree() -> None:
    leaves = _record_leaves(70)
    for split in range(len(leaves) + 1):
        first = Frontier()
        first.extend(leaves[:split])
        encoded = first.to_json()

        resumed = Frontier.from_json(encoded)
        resumed.extend(leaves[split:])

        assert encoded["size"] == split
        assert resumed.size == len(leaves)
        assert resumed.root() == _reference_root(leaves), split


def test_frontier_json_accepts_upper_case_hex() -> None:
    frontier = Frontier()
    frontier.extend(SMALL_LEAVES[:5])
    data = frontier.to_json()
    data["hashes"] = [h.upper() for h in data["hashes"]]

    assert Frontier.from_json(data).root() == SMALL_ROOTS[5]


_GOOD_HASH = "ab" * HASH_SIZE


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ([], r"^frontier: expected an object, got list$"),
        ({"size": 1}, r"^frontier: expected keys 'hashes' and 'size', got \['size'\]$"),
        (
            {"size": 1, "hashes": [_GOOD_HASH], "root": _GOOD_HASH},
            r"^frontier: expected keys 'hashes' and 'size', got \['hashes', 'root', 'size'\]$",
        ),
        ({"size": -1, "hashes": []}, r"^frontier: size must be a non-negative integer, got -1$"),
        ({"size": "1", "hashes": [_GOOD_HASH]}, r"size must be a non-negative integer, got '1'$"),
        ({"size": True, "hashes": [_GOOD_HASH]}, r"size must be a non-negative integer, got True$"),
        ({"size": 1.0, "hashes": [_GOOD_HASH]}, r"size must be a non-negative integer, got 1.0$"),
        ({"size": 1, "hashes": _GOOD_HASH}, r"^frontier: hashes must be a list, got str$"),
        (
            {"size": 3, "hashes": [_GOOD_HASH]},
            r"^frontier: a tree of size 3 has 2 right-edge hashes, got 1$",
        ),
        (
            {"size": 4, "hashes": [_GOOD_HASH, _GOOD_HASH]},
            r"^frontier: a tree of size 4 has 1 right-edge hashes, got 2$",
        ),
        (
            {"size": 0, "hashes": [_GOOD_HASH]},
            r"^frontier: a tree of size 0 has 0 right-edge hashes, got 1$",
        ),
        ({"size": 1, "hashes": [32]}, r"^frontier: hashes\[0\] must be a string, got int$"),
        (
            {"size": 3, "hashes": [_GOOD_HASH, "ab" * 31]},
            r"^frontier: hashes\[1\] is 62 characters, expected 64 hex digits$",
        ),
        (
            {"size": 1, "hashes": ["zz" * HASH_SIZE]},
            r"^frontier: hashes\[0\] is not hex: 'zzzz",
        ),
        (
            {"size": 1, "hashes": [" " + "ab" * 31 + "a"]},
            r"^frontier: hashes\[0\] is not hex: ' abab",
        ),
    ],
)
def test_frontier_json_rejects_malformed_data(data: Any, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Frontier.from_json(data)


# --- Every proof in every small tree -------------------------------------------------


def test_every_inclusion_proof_in_small_trees_verifies_and_resists_tampering() -> None:
    for size in range(1, MAX_SMALL_SIZE + 1):
        tree_root = SMALL_ROOTS[size]
        for index in range(size):
            leaf = SMALL_LEAVES[index]
            proof = inclusion_proof(SMALL_LEAVES, index, size)
            case = f"leaf {index} of {size}"

            assert proof == _reference_path(index, SMALL_LEAVES[:size]), case
            assert verify_inclusion(leaf, index, size, proof, tree_root), case

            for tampered in _proofs_with_one_byte_flipped(proof):
                assert not verify_inclusion(leaf, index, size, tampered, tree_root), case
            for position in range(HASH_SIZE):
                wrong_root = _with_byte_flipped(tree_root, position)
                assert not verify_inclusion(leaf, index, size, proof, wrong_root), case
                wrong_leaf = _with_byte_flipped(leaf, position)
                assert not verify_inclusion(wrong_leaf, index, size, proof, tree_root), case
            for other_index in range(-1, size + 1):
                if other_index != index:
                    assert not verify_inclusion(leaf, other_index, size, proof, tree_root), case
            for other_size in range(len(SMALL_ROOTS)):
                if other_size != size:
                    other_root = SMALL_ROOTS[other_size]
                    assert not verify_inclusion(leaf, index, other_size, proof, other_root), case


def test_every_consistency_proof_in_small_trees_verifies_and_resists_tampering() -> None:
    for new_size in range(MAX_SMALL_SIZE + 1):
        new_root = SMALL_ROOTS[new_size]
        for old_size in range(new_size + 1):
            old_root = SMALL_ROOTS[old_size]
            proof = consistency_proof(SMALL_LEAVES, old_size, new_size)
            case = f"{old_size} -> {new_size}"

            if 0 < old_size < new_size:
                expected = _reference_subproof(old_size, SMALL_LEAVES[:new_size], True)
                assert proof == expected, case
            else:
                assert proof == [], case
            assert verify_consistency(old_size, new_size, old_root, new_root, proof), case

            for tampered in _proofs_with_one_byte_flipped(proof):
                assert not verify_consistency(old_size, new_size, old_root, new_root, tampered)
            for position in range(HASH_SIZE):
                wrong_old = _with_byte_flipped(old_root, position)
                wrong_new = _with_byte_flipped(new_root, position)
                assert not verify_consistency(old_size, new_size, wrong_old, new_root, proof), case
                if old_size > 0 or new_size == 0:  # else any new root extends the empty tree
                    assert not verify_consistency(old_size, new_size, old_root, wrong_new, proof), (
                        case
                    )
            for other_old in range(old_size - 2, old_size + 3):
                for other_new in range(new_size - 2, new_size + 3):
                    if (other_old, other_new) == (old_size, new_size) or not (
                        0 <= other_old <= other_new < len(SMALL_ROOTS)
                    ):
                        continue
                    if not proof and other_old in (0, other_new):
                        continue  # an empty proof is the right proof for these pairs too
                    assert not verify_consistency(
                        other_old, other_new, SMALL_ROOTS[other_old], SMALL_ROOTS[other_new], proof
                    ), f"{case} checked as {other_old} -> {other_new}"


def test_consistency_between_equal_sizes_needs_equal_roots_and_no_proof() -> None:
    some_root = SMALL_ROOTS[5]

    assert verify_consistency(5, 5, some_root, some_root, [])
    assert not verify_consistency(5, 5, some_root, SMALL_ROOTS[4], [])
    assert not verify_consistency(5, 5, some_root, some_root, [some_root])
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert not verify_consistency(0, 0, some_root, some_root, [])


def test_every_tree_extends_the_empty_tree_and_only_with_an_empty_proof() -> None:
    assert verify_consistency(0, 7, EMPTY_ROOT, SMALL_ROOTS[7], [])
    assert verify_consistency(0, 7, EMPTY_ROOT, SOME_HASH, [])
    assert not verify_consistency(0, 7, SOME_HASH, SMALL_ROOTS[7], [])
    assert not verify_consistency(0, 7, EMPTY_ROOT, SMALL_ROOTS[7], [EMPTY_ROOT])


def test_a_proof_does_not_bind_the_tree_size() -> None:
    """Why checkpoints sign the size with the root: a proof can verify under another size."""
    leaf, proof, root_of_3 = SMALL_LEAVES[0], inclusion_proof(SMALL_LEAVES, 0, 3), SMALL_ROOTS[3]

    assert verify_inclusion(leaf, 0, 3, proof, root_of_3)
    assert verify_inclusion(leaf, 0, 4, proof, root_of_3)
    assert not verify_inclusion(leaf, 0, 4, proof, SMALL_ROOTS[4])


@pytest.mark.parametrize(
    ("index", "size", "proof", "tree_root"),
    [
        (0, 1, [], b""),
        (0, 1, [], b"\x00" * 33),
        (0, 2, [SMALL_LEAVES[1][:-1]], SMALL_ROOTS[2]),
        (0, 2, [SMALL_LEAVES[1] + b"\x00"], SMALL_ROOTS[2]),
        (0, 0, [], EMPTY_ROOT),
        (-1, 2, [SMALL_LEAVES[1]], SMALL_ROOTS[2]),
        (0, -1, [], SMALL_ROOTS[1]),
        (0, 2**64 + 1, [SMALL_LEAVES[1]] * 65, SMALL_ROOTS[2]),
    ],
)
def test_verify_inclusion_answers_false_to_malformed_input(
    index: int, size: int, proof: list[bytes], tree_root: bytes
) -> None:
    assert not verify_inclusion(SMALL_LEAVES[0], index, size, proof, tree_root)


def test_verify_inclusion_answers_false_to_a_leaf_of_the_wrong_length() -> None:
    assert not verify_inclusion(b"", 0, 1, [], SMALL_LEAVES[0])
    assert not verify_inclusion(SMALL_LEAVES[0][:-1], 0, 1, [], SMALL_LEAVES[0][:-1])


@pytest.mark.parametrize(
    ("old_size", "new_size", "old_root", "new_root", "proof"),
    [
        (3, 5, SMALL_ROOTS[3], SMALL_ROOTS[5], []),
        (3, 5, SMALL_ROOTS[3][:-1], SMALL_ROOTS[5], consistency_proof(SMALL_LEAVES, 3, 5)),
        (3, 5, SMALL_ROOTS[3], SMALL_ROOTS[5] + b"\x00", consistency_proof(SMALL_LEAVES, 3, 5)),
        (3, 5, SMALL_ROOTS[3], SMALL_ROOTS[5], [b"\x00" * 31] * 3),
        (5, 3, SMALL_ROOTS[5], SMALL_ROOTS[3], consistency_proof(SMALL_LEAVES, 3, 5)),
        (-1, 3, EMPTY_ROOT, SMALL_ROOTS[3], []),
        (1, 2**64, SMALL_ROOTS[1], SMALL_ROOTS[2], [SMALL_LEAVES[1]] * 70),
    ],
)
def test_verify_consistency_answers_false_to_malformed_input(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: list[bytes]
) -> None:
    assert not verify_consistency(old_size, new_size, old_root, new_root, proof)


@pytest.mark.parametrize(
    ("index", "size", "error"),
    [
        (3, 3, r"^leaf index 3 is not in a tree of size 3$"),
        (-1, 3, r"^leaf index -1 is not in a tree of size 3$"),
        (0, 0, r"^leaf index 0 is not in a tree of size 0$"),
        (0, 46, r"^tree size 46 is outside 0\.\.45 \(the leaves given\)$"),
    ],
)
def test_inclusion_proof_rejects_bad_arguments(index: int, size: int, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        inclusion_proof(SMALL_LEAVES, index, size)


@pytest.mark.parametrize(
    ("old_size", "new_size", "error"),
    [
        (6, 5, r"^old size 6 is outside 0\.\.5 \(the new size\)$"),
        (-1, 5, r"^old size -1 is outside 0\.\.5 \(the new size\)$"),
        (3, 46, r"^new size 46 is outside 0\.\.45 \(the leaves given\)$"),
    ],
)
def test_consistency_proof_rejects_bad_arguments(old_size: int, new_size: int, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        consistency_proof(SMALL_LEAVES, old_size, new_size)


# --- A large tree --------------------------------------------------------------------

LARGE_SIZE = 100_000


@pytest.fixture(scope="module")
def large_leaves() -> list[bytes]:
    return _record_leaves(LARGE_SIZE, seed="large ")


def test_proofs_work_in_a_100000_leaf_tree(large_leaves: list[bytes]) -> None:
    frontier = Frontier()
    checkpoints: dict[int, bytes] = {}
    for size, leaf in enumerate(large_leaves, start=1):
        frontier.append(leaf)
        if size in (1, 65_536, 77_777, 99_999, LARGE_SIZE):
            checkpoints[size] = frontier.root()
    assert root(large_leaves) == checkpoints[LARGE_SIZE]

    for index, size in [
        (0, LARGE_SIZE),
        (65_535, LARGE_SIZE),
        (99_999, LARGE_SIZE),
        (77_776, 77_777),
    ]:
        proof = inclusion_proof(large_leaves, index, size)
        assert len(proof) <= (size - 1).bit_length()
        assert verify_inclusion(large_leaves[index], index, size, proof, checkpoints[size])
        assert not verify_inclusion(large_leaves[index ^ 1], index, size, proof, checkpoints[size])

    for old_size in (1, 65_536, 77_777, 99_999):
        proof = consistency_proof(large_leaves, old_size, LARGE_SIZE)
        old_root, new_root = checkpoints[old_size], checkpoints[LARGE_SIZE]
        assert verify_consistency(old_size, LARGE_SIZE, old_root, new_root, proof)
        tampered = [*proof[:-1], _with_byte_flipped(proof[-1], 7)]
        assert not verify_consistency(old_size, LARGE_SIZE, old_root, new_root, tampered)


def test_one_tree_gives_every_consistency_proof_of_a_large_log() -> None:
    """Above 1,024 leaves a Tree reuses the subtree roots it computed: each proof must
    still be RFC 6962's, whatever was asked of the tree before."""
    leaves = _record_leaves(5000, "tree")
    tree = Tree(leaves)
    assert tree.root(0, 5000) == _reference_root(leaves)
    for old, new in [(1, 5000), (1024, 5000), (1025, 4097), (3333, 5000), (4999, 5000)]:
        expected = _reference_subproof(old, leaves[:new], True)
        assert tree.consistency_proof(old, new) == expected, (old, new)
