"""The shard function of SPEC §18: the ONE place that maps a member to its shard.

shard = int.from_bytes(BLAKE2b(member_id UTF-8, digest_size=8), "big") mod S

BLAKE2b with an 8-byte digest (BLAKE2b-64: the digest length is a parameter of
BLAKE2b, so this is not the first 8 bytes of BLAKE2b-512), no key, no salt, no
personalisation; the 8 bytes read as an unsigned big-endian integer. Test
vectors for producers in other languages are in docs/scale-out.md.
"""

import hashlib

from ..errors import InvalidArgument

SHARDS_MAX = 1024  # a sanity bound: one store, one consumer and one subject per shard


def member_hash(member_id):
    """The member's 64-bit hash (an int in 0 .. 2**64 - 1)."""
    return int.from_bytes(hashlib.blake2b(member_id.encode("utf-8"), digest_size=8).digest(), "big")


def shard_of(member_id, shards):
    """The shard (0 .. shards - 1) of a member id (str)."""
    return member_hash(member_id) % shards


def check_shards(shards, field="shards"):
    """The shard count, or InvalidArgument naming it."""
    if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= SHARDS_MAX:
        raise InvalidArgument(field, shards, f"must be an integer from 1 to {SHARDS_MAX}")
    return shards


def check_shard(shard, shards, field="shard"):
    """A shard number K of S shards, or InvalidArgument naming it."""
    check_shards(shards)
    if isinstance(shard, bool) or not isinstance(shard, int) or not 0 <= shard < shards:
        raise InvalidArgument(field, shard, f"must be an integer from 0 to {shards - 1} (of {shards} shards)")
    return shard


def subject(prefix, shard):
    """The subject a shard's commands are published to: <prefix>.<shard>."""
    return f"{prefix}.{shard}"
