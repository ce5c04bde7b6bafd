"""Scale-out past one machine (SPEC §18): member shards fed by NATS JetStream, exactly once.

    sharding  the shard function (the ONE place; test vectors in docs/scale-out.md)
    commands  what one stream message holds (proto request + headers)
    producer  Producer / BlockingProducer: commands to <prefix>.<shard>
    applier   ShardApplier: a run of messages in one store transaction with the stream sequence
    consumer  Consumer: pull, apply, ack; resume after the stored sequence
    broker    connecting, and the stream itself
    routing   reading and writing across shards (by member; sums and checks over all)
    split     one file per shard, for backfills
"""

from .sharding import SHARDS_MAX, check_shard, check_shards, member_hash, shard_of, subject

__all__ = ["SHARDS_MAX", "check_shard", "check_shards", "member_hash", "shard_of", "subject"]
