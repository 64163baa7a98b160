-- Signed checkpoints of the event store (planloop.audit.checkpoints).
--
-- A checkpoint is a signed document committing to every stream's head (a Merkle root over the sorted heads),
-- its sequence number, time, totals, the previous checkpoint's digest and the signing key's id. The document is
-- kept byte for byte as signed. The heads behind its root are kept as a delta: a row for each stream whose
-- head moved since the checkpoint before, so the heads of checkpoint n are each stream's latest row with
-- sequence <= n, and a stream's rows over all checkpoints are the hashes its history was seen with.
--
-- Like the events, all of this is append-only: a trigger refuses UPDATE, DELETE and TRUNCATE. A database
-- administrator can switch the trigger off, but cannot sign: the key is a file on the API's host, and every
-- stored checkpoint is checked against its signature and root before it is believed.

CREATE TABLE audit_keys (
    key_id      text        PRIMARY KEY,
    public_key  text        NOT NULL,
    first_used  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audit_checkpoints (
    sequence      bigint      PRIMARY KEY CHECK (sequence >= 1),
    published_at  timestamptz NOT NULL,
    digest        text        NOT NULL UNIQUE,
    root          text        NOT NULL,
    streams       bigint      NOT NULL,
    events        bigint      NOT NULL,
    key_id        text        NOT NULL REFERENCES audit_keys (key_id),
    document      text        NOT NULL
);

CREATE TABLE audit_checkpoint_heads (
    sequence   bigint NOT NULL REFERENCES audit_checkpoints (sequence),
    stream_id  text   NOT NULL,
    version    bigint NOT NULL,
    head_hash  text   NOT NULL,
    PRIMARY KEY (stream_id, sequence)
);

CREATE INDEX audit_checkpoint_heads_sequence_idx ON audit_checkpoint_heads (sequence);

CREATE FUNCTION audit_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit checkpoints are append-only: % on % is refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Publish a new checkpoint instead of changing one.';
END
$$;

CREATE TRIGGER audit_keys_no_update_delete BEFORE UPDATE OR DELETE ON audit_keys
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_keys_no_truncate BEFORE TRUNCATE ON audit_keys
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_checkpoints_no_update_delete BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_checkpoint_heads_no_update_delete BEFORE UPDATE OR DELETE ON audit_checkpoint_heads
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_checkpoint_heads_no_truncate BEFORE TRUNCATE ON audit_checkpoint_heads
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();
