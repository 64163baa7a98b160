-- API tokens: only the SHA-256 of a token is stored, so a leaked table grants nothing.
-- Each token is bound to one principal (the actor recorded on the events it causes), its roles and
-- the org units it may act on (empty: the whole company).
CREATE TABLE api_tokens (
    token_hash    text        PRIMARY KEY,
    principal     text        NOT NULL CHECK (principal <> ''),
    display_name  text        NOT NULL DEFAULT '',
    roles         text[]      NOT NULL,
    scopes        text[]      NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);

CREATE INDEX api_tokens_principal ON api_tokens (principal);
