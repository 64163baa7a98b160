-- Idempotency-Key of every write: the first request with a key claims it (the primary key makes
-- concurrent duplicates take turns), acts, and stores its answer; a repeat gets the stored answer.
-- Keys are per principal, so two callers never collide on a key they happened to choose alike.
CREATE TABLE idempotency_keys (
    principal     text        NOT NULL,
    key           text        NOT NULL,
    method        text        NOT NULL,
    path          text        NOT NULL,
    request_hash  text        NOT NULL,
    status_code   integer,              -- NULL while the first request is still acting
    response      jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz,
    PRIMARY KEY (principal, key)
);
