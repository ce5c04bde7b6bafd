"""The importer's sink for `pointsledger publish`: batches of a file to the stream, by shard.

It plugs into importer.Ingest like EmbeddedSink and ServerSink, so publish reads
CSV/Parquet with the same rejects file and progress bar as ingest. A row is
"accepted" once the stream holds it (the PubAck); the shard's consumer applies it.
Cells that cannot travel in the typed columns are rejected here, like ServerSink.
"""

import hashlib

from ..importer import _sendable_columns, _split_unsendable, file_identity
from .producer import BlockingProducer

PUBLISHED = ("APPLIED", 0, 0, 0, None)  # the stream holds the row: counted as accepted


class PublishSink:
    def __init__(self, url, stream, shards, source, *, prefix=None, message_rows=4_096):
        self.producer = BlockingProducer(url, stream, shards, prefix=prefix, message_rows=message_rows)
        self.target = f"nats:{url}/{stream}"
        identity = file_identity(source.path)
        # Message ids: the same file published again within the duplicate window is stored once.
        self.file_key = hashlib.sha256(f"{identity['head_sha256']}:{identity['size']}".encode()).hexdigest()[:16]

    def apply(self, batches):
        for batch in batches:
            keep, local = _split_unsendable(batch.columns)
            columns = _sendable_columns(batch.columns, keep)
            if len(columns[0]):
                self.producer.purchases(*columns, batch_id=f"{self.file_key}:{batch.first_record}")
            outcomes = [PUBLISHED] * len(batch)
            if keep is not None:
                outcomes = [PUBLISHED if outcome is None else outcome for outcome in local]
            yield batch, outcomes

    def holds(self, member_id, order_id):
        return None  # a stream cannot be asked; publish keeps no resume point

    def finish(self):
        pass

    def close(self):
        self.producer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
