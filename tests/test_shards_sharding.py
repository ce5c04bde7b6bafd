"""The shard function of §18 (shards/sharding.py): fixed vectors, also printed in docs/scale-out.md.

The hashes were checked with an independent BLAKE2b (coreutils: `printf 'member-001' | b2sum -l 64`).
"""

import os

import pytest

from pointsledger.errors import InvalidArgument
from pointsledger.shards import check_shard, check_shards, member_hash, shard_of

# member id, BLAKE2b-64 of its UTF-8 (hex), shard of 2, of 3, of 16
VECTORS = [
    ("member-001", "5cab72c5c60ebd4e", 0, 0, 14),
    ("member-002", "4de9ef8ea12b7823", 1, 0, 3),
    ("m0", "0444cc705e1aa5d0", 0, 2, 0),
    ("café-7", "0c784f9b3afbd157", 1, 2, 7),
    ("会员-42", "f0d2a04848c49e35", 1, 0, 5),
    ("0", "842b7d9d43cddf75", 1, 1, 5),
]
DOCS = os.path.join(os.path.dirname(__file__), "..", "docs", "scale-out.md")


@pytest.mark.parametrize("member_id, digest, of2, of3, of16", VECTORS)
def test_vectors(member_id, digest, of2, of3, of16):
    assert member_hash(member_id) == int(digest, 16)
    assert [shard_of(member_id, 2), shard_of(member_id, 3), shard_of(member_id, 16)] == [of2, of3, of16]
    assert shard_of(member_id, 1) == 0


def test_big_endian_not_little():
    # 0x5cab72c5c60ebd4e mod 16 = 0xe = 14; read little-endian (0x4ebd0ec6c572ab5c) it would be 12.
    assert int.from_bytes(bytes.fromhex("5cab72c5c60ebd4e"), "little") % 16 == 12
    assert shard_of("member-001", 16) == 14


def test_the_docs_give_the_same_vectors():
    with open(DOCS, encoding="utf-8") as handle:
        text = handle.read()
    for member_id, digest, of2, of3, of16 in VECTORS:
        assert f"| `{member_id}` | `{digest}` | {of2} | {of3} | {of16} |" in text


@pytest.mark.parametrize("value", [0, -1, 1025, 2.0, True, "3"])
def test_shard_count_is_checked(value):
    with pytest.raises(InvalidArgument) as error:
        check_shards(value)
    assert error.value.field == "shards"


def test_shard_number_is_checked():
    assert check_shard(2, 3) == 2
    with pytest.raises(InvalidArgument) as error:
        check_shard(3, 3)
    assert error.value.field == "shard" and "0 to 2" in str(error.value)
