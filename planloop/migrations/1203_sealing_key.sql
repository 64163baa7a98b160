-- Which key seals the shared secrets of webhook subscriptions and inbound sources: not the key (it lives in
-- a file on the API hosts, never here) but a keyed check value, so an API host whose key file is another
-- (made anew, or never copied) is refused at start instead of sealing secrets the others cannot open.
CREATE TABLE sealing_key (
    only_one    boolean     PRIMARY KEY DEFAULT true CHECK (only_one),
    check_value text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
