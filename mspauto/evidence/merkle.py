"""RFC 6962 (Certificate Transparency) Merkle trees over a client's evidence chain.

Each client's hash chain of records is also a Merkle tree: leaf *i* is
``leaf_hash(record_i.hash)``, where the leaf data is the record's 32-byte SHA-256
hash as raw bytes. A signed checkpoint carries a tree size and its root; later
reports prove that a record is in the tree (an inclusion proof) and that this
month's tree extends last month's (a consistency proof).

Hashing is RFC 6962 section 2.1 with SHA-256, domain-separated so a leaf can never
pass for an interior node::

    MTH({})      = SHA-256()                          (EMPTY_ROOT)
    leaf hash    = SHA-256(0x00 || data)              (leaf_hash)
    node hash    = SHA-256(0x01 || left || right)     (node_hash)
    MTH(D[n])    = node_hash(MTH(D[0:k]), MTH(D[k:n]))
                   for k the largest power of two smaller than n

Everything else in this module takes *hashed* leaves (outputs of :func:`leaf_hash`).

- :class:`Frontier` keeps only the roots of the perfect subtrees along the right
  edge, so the writer can extend a client's tree record by record and read its
  root at any size without keeping the leaves.
- :func:`inclusion_proof` and :func:`consistency_proof` build the RFC 6962
  section 2.1.1 and 2.1.2 proofs from the full list of leaves; each call is O(n)
  hashes and iterative, so it works for millions of leaves.
- :func:`verify_inclusion` and :func:`verify_consistency` are the RFC 9162
  section 2.1.3.2 and 2.1.4.2 algorithms. They return ``False`` for anything that
  is not a valid proof, whatever its shape; they never raise.

Neither kind of proof binds the tree size by itself: a proof for one size can
verify under another size with the same root. Always verify against a size and
root taken together from one signed checkpoint.

Consistency from the empty tree (``old_size == 0``) is defined here as always
holding with an empty proof (RFC 9162 leaves it undefined), provided the old root
is :data:`EMPTY_ROOT`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "Frontier",
    "Tree",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Bytes in every hash this module takes or returns (SHA-256)."""

EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()
"""The root of the empty tree: SHA-256 of the empty string (RFC 6962 ``MTH({})``)."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """Hash leaf data into a tree leaf: ``SHA-256(0x00 || data)``."""
    return _sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash two child hashes into their parent: ``SHA-256(0x01 || left || right)``."""
    return _sha256(_NODE_PREFIX + left + right).digest()


def _fold_right_edge(hashes: Sequence[bytes]) -> bytes:
    """The root of a tree given the roots of its right-edge perfect subtrees.

    ``hashes`` run from the largest (leftmost) subtree to the smallest; RFC 6962
    splits off the largest perfect subtree first, so the smallest ones pair first.
    """
    if not hashes:
        return EMPTY_ROOT
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = _sha256(_NODE_PREFIX + left + result).digest()
    return result


def _leaf_size_error(index: int, leaf: bytes) -> ValueError:
    return ValueError(f"leaf {index} is {len(leaf)} bytes, expected a {HASH_SIZE}-byte leaf hash")


class Frontier:
    """The compact range ``[0, size)`` of a tree: enough to extend it and read its root.

    Holds one hash per set bit of ``size`` (at most ``log2(size) + 1``): the roots
    of the perfect subtrees along the tree's right edge, largest first. Appending a
    leaf merges equal-sized subtrees like a binary counter carries, so it costs one
    node hash amortised.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self) -> None:
        """Start an empty tree."""
        self._hashes: list[bytes] = []
        self._size = 0

    @property
    def size(self) -> int:
        """How many leaves the tree has."""
        return self._size

    def append(self, leaf: bytes) -> None:
        """Add one hashed leaf (an output of :func:`leaf_hash`) at the right edge.

        Raises:
            ValueError: ``leaf`` is not :data:`HASH_SIZE` bytes long.
        """
        # Inlined rather than calling extend(): append is the writer's hot path.
        if len(leaf) != HASH_SIZE:
            raise _leaf_size_error(self._size, leaf)
        hashes = self._hashes
        carry = self._size
        merged = leaf
        while carry & 1:
            merged = _sha256(_NODE_PREFIX + hashes.pop() + merged).digest()
            carry >>= 1
        hashes.append(merged)
        self._size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        """Add hashed leaves in order.

        Raises:
            ValueError: a leaf is not :data:`HASH_SIZE` bytes long. The leaves
                before it stay appended.
        """
        hashes = self._hashes
        sha256 = _sha256
        node_prefix = _NODE_PREFIX
        size = self._size
        try:
            for leaf in leaves:
                if len(leaf) != HASH_SIZE:
                    raise _leaf_size_error(size, leaf)
                carry = size
                merged = leaf
                while carry & 1:
                    merged = sha256(node_prefix + hashes.pop() + merged).digest()
                    carry >>= 1
                hashes.append(merged)
                size += 1
        finally:
            self._size = size

    def root(self) -> bytes:
        """The RFC 6962 root of the leaves so far (:data:`EMPTY_ROOT` when empty)."""
        return _fold_right_edge(self._hashes)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready form: ``{"size": n, "hashes": [hex, ...]}``, largest subtree first."""
        return {"size": self._size, "hashes": [h.hex() for h in self._hashes]}

    @classmethod
    def from_json(cls, data: object) -> Frontier:
        """Read back the output of :meth:`to_json`.

        Raises:
            ValueError: ``data`` is not that shape: keys other than ``size`` and
                ``hashes``, a size that is not a non-negative integer, hashes that
                are not 64-character hex strings, or not one hash per set bit of size.
        """
        if not isinstance(data, dict):
            raise ValueError(f"frontier: expected an object, got {type(data).__name__}")
        if set(data) != {"size", "hashes"}:
            raise ValueError(
                f"frontier: expected keys 'hashes' and 'size', got {sorted(map(str, data))}"
            )
        size = data["size"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"frontier: size must be a non-negative integer, got {size!r}")
        encoded = data["hashes"]
        if not isinstance(encoded, list):
            raise ValueError(f"frontier: hashes must be a list, got {type(encoded).__name__}")
        expected = size.bit_count()
        if len(encoded) != expected:
            raise ValueError(
                f"frontier: a tree of size {size} has {expected} right-edge hashes, "
                f"got {len(encoded)}"
            )
        frontier = cls()
        frontier._hashes = [_decode_hash(text, position) for position, text in enumerate(encoded)]
        frontier._size = size
        return frontier

    def __repr__(self) -> str:
        return f"Frontier(size={self._size}, root={self.root().hex()})"


_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def _decode_hash(text: object, position: int) -> bytes:
    if not isinstance(text, str):
        raise ValueError(
            f"frontier: hashes[{position}] must be a string, got {type(text).__name__}"
        )
    if len(text) != 2 * HASH_SIZE:
        raise ValueError(
            f"frontier: hashes[{position}] is {len(text)} characters, "
            f"expected {2 * HASH_SIZE} hex digits"
        )
    if not _HEX_DIGITS.issuperset(text):
        raise ValueError(f"frontier: hashes[{position}] is not hex: {text!r}")
    return bytes.fromhex(text)


def root(leaves: Sequence[bytes]) -> bytes:
    """The RFC 6962 root ``MTH`` of hashed leaves (:data:`EMPTY_ROOT` for none)."""
    frontier = Frontier()
    frontier.extend(leaves)
    return frontier.root()


def _split(count: int) -> int:
    """The largest power of two smaller than ``count`` (``count >= 2``)."""
    return 1 << ((count - 1).bit_length() - 1)


def inclusion_proof(leaves: Sequence[bytes], index: int, size: int) -> list[bytes]:
    """The audit path for leaf ``index`` in the tree of the first ``size`` leaves.

    RFC 6962 section 2.1.1 ``PATH(index, D[size])``: sibling hashes from the leaf
    upwards. Costs O(size) hashes.

    Raises:
        ValueError: not ``0 <= index < size <= len(leaves)``.
    """
    if not 0 <= size <= len(leaves):
        raise ValueError(f"tree size {size} is outside 0..{len(leaves)} (the leaves given)")
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not in a tree of size {size}")
    siblings: list[bytes] = []
    low, high = 0, size
    while high - low > 1:
        middle = low + _split(high - low)
        if index < middle:
            siblings.append(root(leaves[middle:high]))
            high = middle
        else:
            siblings.append(root(leaves[low:middle]))
            low = middle
    siblings.reverse()
    return siblings


def consistency_proof(leaves: Sequence[bytes], old_size: int, new_size: int) -> list[bytes]:
    """The proof that the tree of ``new_size`` leaves extends the one of ``old_size``
    (:meth:`Tree.consistency_proof`). Costs O(new_size) hashes."""
    return Tree(leaves).consistency_proof(old_size, new_size)


class Tree:
    """The Merkle tree over ``leaves``, each RFC 6962 subtree root computed once: a
    root and the consistency proofs to it share most of their subtrees, so all of them
    together cost about one pass over the leaves, as each would alone."""

    _DIRECT = 1024
    """Subtrees of at most this many leaves are hashed straight from the leaves."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self.leaves = leaves
        self._roots: dict[tuple[int, int], bytes] = {}

    def root(self, low: int, high: int) -> bytes:
        """The RFC 6962 root of ``leaves[low:high]``."""
        if high - low <= self._DIRECT:
            return root(self.leaves[low:high])
        known = self._roots.get((low, high))
        if known is None:
            middle = low + _split(high - low)
            known = node_hash(self.root(low, middle), self.root(middle, high))
            self._roots[(low, high)] = known
        return known

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """The proof that the tree of the first ``new_size`` leaves extends the one of
        ``old_size``: RFC 6962 section 2.1.2 ``PROOF(old_size, D[new_size])``, lowest
        subtree first; empty when ``old_size`` is 0 or equals ``new_size``.

        Raises:
            ValueError: not ``0 <= old_size <= new_size <= len(leaves)``.
        """
        if not 0 <= new_size <= len(self.leaves):
            raise ValueError(
                f"new size {new_size} is outside 0..{len(self.leaves)} (the leaves given)"
            )
        if not 0 <= old_size <= new_size:
            raise ValueError(f"old size {old_size} is outside 0..{new_size} (the new size)")
        if old_size in (0, new_size):
            return []
        nodes: list[bytes] = []
        low, high = 0, new_size
        old_tree_is_whole_subtree = True
        while old_size != high:
            middle = low + _split(high - low)
            if old_size <= middle:
                nodes.append(self.root(middle, high))
                high = middle
            else:
                nodes.append(self.root(low, middle))
                low = middle
                old_tree_is_whole_subtree = False
        # The verifier already holds the old root, so it is left out when the old tree
        # is itself one of the subtrees; otherwise the subtree that ends it comes first.
        if not old_tree_is_whole_subtree:
            nodes.append(self.root(low, high))
        nodes.reverse()
        return nodes


def _all_hashes(*hashes: bytes) -> bool:
    return all(len(h) == HASH_SIZE for h in hashes)


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Whether ``proof`` shows hashed ``leaf`` at ``index`` in the tree ``(size, root)``.

    RFC 9162 section 2.1.3.2. ``False`` for any malformed input, never an exception.
    """
    if not 0 <= index < size or not _all_hashes(leaf, root, *proof):
        return False
    sha256 = _sha256
    node_prefix = _NODE_PREFIX
    fn, sn = index, size - 1
    result = leaf
    for sibling in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            result = sha256(node_prefix + sibling + result).digest()
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            result = sha256(node_prefix + result + sibling).digest()
        fn >>= 1
        sn >>= 1
    return sn == 0 and result == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Whether ``proof`` shows the tree ``(new_size, new_root)`` extends ``(old_size, old_root)``.

    RFC 9162 section 2.1.4.2 for ``0 < old_size < new_size``. Equal sizes need an
    empty proof and equal roots; ``old_size == 0`` needs an empty proof and
    ``old_root == EMPTY_ROOT``. ``False`` for any malformed input, never an exception.
    """
    if not 0 <= old_size <= new_size or not _all_hashes(old_root, new_root, *proof):
        return False
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT and (new_size > 0 or new_root == EMPTY_ROOT)
    if old_size == new_size:
        return not proof and old_root == new_root
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    sha256 = _sha256
    node_prefix = _NODE_PREFIX
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    old_result = new_result = path[0]
    for node in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            old_result = sha256(node_prefix + node + old_result).digest()
            new_result = sha256(node_prefix + node + new_result).digest()
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            new_result = sha256(node_prefix + new_result + node).digest()
        fn >>= 1
        sn >>= 1
    return sn == 0 and old_result == old_root and new_result == new_root
