-- Systems that post to planloop's inbound webhooks (e.g. an ERP posting monthly actuals): each signs its
-- requests with HMAC-SHA256 over "timestamp.body" with its shared secret. The secret must be kept in
-- clear, since the server recomputes the signature; it is shown once, when the source is registered.
CREATE TABLE inbound_sources (
    source      text        PRIMARY KEY CHECK (source ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    secret      text        NOT NULL CHECK (length(secret) >= 16),
    -- The actor recorded on the events its requests cause, and the org units it may post for (empty: all).
    actor       text        NOT NULL,
    scopes      text[]      NOT NULL DEFAULT '{}',
    created_by  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
