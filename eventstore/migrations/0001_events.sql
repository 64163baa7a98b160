-- The event store: one append-only table of events, one row per stream holding its head.
--
-- Feed order is (tx_id, position), not position alone: a sequence hands out positions before
-- commit, so a reader paging by position could pass a position whose transaction commits later.
-- Readers only read rows whose tx_id is below the oldest transaction still in flight.

CREATE TABLE events (
    position        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id       text        NOT NULL,
    version         bigint      NOT NULL CHECK (version >= 1),
    event_id        uuid        NOT NULL,
    type            text        NOT NULL,
    schema_version  integer     NOT NULL CHECK (schema_version >= 1),
    data            jsonb       NOT NULL,
    metadata        jsonb       NOT NULL,
    recorded_at     timestamptz NOT NULL,
    content_digest  text        NOT NULL,
    prev_hash       text        NOT NULL,
    hash            text        NOT NULL,
    tx_id           xid8        NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, version)
);

CREATE INDEX events_feed_idx ON events (tx_id, position);

-- The head of each stream: its version and the hash of its last event. It is what an append
-- locks and checks against; verify() never trusts it and recomputes the chain from events.
CREATE TABLE streams (
    stream_id   text   PRIMARY KEY,
    version     bigint NOT NULL,
    last_hash   text   NOT NULL
);

-- History is append-only: nobody, not even the application, may rewrite or remove an event.
CREATE FUNCTION events_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only: % on events is refused', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Record a correcting event instead of changing history.';
END
$$;

CREATE TRIGGER events_no_update_delete
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_refuse_change();

CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();
