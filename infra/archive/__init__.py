"""The event archive in S3: compressed JSON-lines objects per topic and hour, with manifests.

Layout, one object and one manifest per flushed batch of one partition and hour:

    <prefix>/<topic>/date=2026-11-25/hour=13/p0003-o00000000000000001200.jsonl.gz
    <prefix>/<topic>/date=2026-11-25/hour=13/p0003-o00000000000000001200.manifest.json

Object names come from the first offset they hold. The archive group commits
Kafka offsets only after writing, so a redo after a crash starts at the same
offset and overwrites the object instead of adding a second one; readers
still drop any offset they have already seen.
"""

from infra.archive.format import StoredRecord

__all__ = ["StoredRecord"]
