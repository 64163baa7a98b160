"""The SQL the store runs, kept as SQL: one named statement each, no strings assembled in code."""

from typing import Final

APPEND: Final = """
SELECT status, event_id, version, "position", recorded_at, hash, current_version
  FROM eventstore_append($1, $2, $3::uuid[], $4::text[], $5::integer[], $6::text[], $7::text[], $8::text[])
"""

_COLUMNS = """
    position, stream_id, version, event_id, type, schema_version, data::text AS data,
    metadata::text AS metadata, recorded_at, prev_hash, hash, tx_id::text::bigint AS tx_id
"""

READ_STREAM: Final = f"""
SELECT {_COLUMNS}
  FROM events
 WHERE stream_id = $1
   AND version > $2
   AND ($3::bigint IS NULL OR version <= $3)
   AND ($4::timestamptz IS NULL OR recorded_at <= $4)
 ORDER BY version
 LIMIT $5
"""

# Gap-safe feed: order by (tx_id, position) and stop below the oldest transaction in flight, so an
# event whose transaction commits after a later-numbered one is never passed over.
READ_ALL: Final = f"""
SELECT {_COLUMNS}
  FROM events
 WHERE (tx_id, position) > ($1::text::xid8, $2::bigint)
   AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
 ORDER BY tx_id, position
 LIMIT $3
"""

STREAM_VERSION: Final = "SELECT version FROM streams WHERE stream_id = $1"

STREAM_HEAD: Final = "SELECT version, last_hash FROM streams WHERE stream_id = $1"

# Streams are listed from events, not from the heads table: an event smuggled in for a stream the
# heads table does not know must still be verified.
STREAM_IDS: Final = """
SELECT DISTINCT stream_id FROM events WHERE stream_id > $1 ORDER BY stream_id LIMIT $2
"""

VERIFY_ROWS: Final = f"""
SELECT {_COLUMNS}, content_digest
  FROM events
 WHERE stream_id = $1
 ORDER BY version, position
"""

LISTEN_CHANNEL: Final = "planloop_events"

# The wake-up hint for subscribers; a separate, tiny transaction (see EventStore._hint).
NOTIFY: Final = "SELECT pg_notify('planloop_events', '')"
