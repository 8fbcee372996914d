"""Duplicates: exact (sha256) and near (pHash), keeping the largest image of each group."""

from __future__ import annotations

from zlt.dataset.dupes import DupItem, find_duplicates, hamming, near_pairs


def item(key: str, sha: str, phash: str | None, pixels: int = 100) -> DupItem:
    return DupItem(key, sha, phash, pixels)


def test_exact_duplicates_keep_the_first_path() -> None:
    out = find_duplicates([item("a", "s1", "00"), item("b", "s1", "00"), item("c", "s2", "ffffffffffffffff")])
    assert [(d.key, d.kept, d.kind, d.distance) for d in out] == [("b", "a", "exact", 0)]


def test_near_duplicates_keep_the_largest_and_chain() -> None:
    items = [
        item("small", "s1", "0000000000000000", 10),
        item("big", "s2", "0000000000000003", 1000),  # 2 bits from small
        item("chain", "s3", "000000000000000f", 50),  # 2 bits from big, 4 from small
        item("other", "s4", "ffffffffffff0000", 500),
        item("flat", "s5", None, 5),
    ]
    out = find_duplicates(items, max_distance=2)
    assert sorted((d.key, d.kept, d.kind) for d in out) == [("chain", "big", "near"), ("small", "big", "near")]
    assert {d.key: d.distance for d in out} == {"small": 2, "chain": 2}
    assert find_duplicates(items, max_distance=None) == []


def test_exact_and_near_together() -> None:
    items = [item("a", "s1", "0000000000000000"), item("a2", "s1", "0000000000000000"), item("b", "s2", "0000000000000001")]
    kinds = {d.key: (d.kind, d.kept) for d in find_duplicates(items)}
    assert kinds == {"a2": ("exact", "a"), "b": ("near", "a")}


def test_near_pairs_and_hamming() -> None:
    assert hamming("ff", "0f") == 4
    hashes = [0, 1, 3, 0xFFFF000000000000]
    assert near_pairs(hashes, 1) == [(0, 1, 1), (1, 2, 1)]
    assert near_pairs(hashes, 2) == [(0, 1, 1), (0, 2, 2), (1, 2, 1)]
    assert near_pairs([5], 3) == []
