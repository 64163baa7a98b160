-- Read models: projections of the event store, each with a checkpoint advanced in the same
-- transaction as its rows, so a crash never applies an event twice or skips one.

-- Where each projection (and the webhook dispatcher) has got to in the global feed: the cursor
-- (tx_id, position) of the last event it has taken into account.
CREATE TABLE projection_checkpoints (
    name        text        PRIMARY KEY,
    cursor_tx   bigint      NOT NULL DEFAULT 0,
    cursor_pos  bigint      NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Each state-folding projection keeps its own snapshot of every plan's state (domain.PlanState as
-- JSON), so it evolves one event at a time and can be rebuilt without touching the others.
CREATE TABLE projection_plan_states (
    projection  text   NOT NULL,
    stream_id   text   NOT NULL,
    version     bigint NOT NULL,
    state       jsonb  NOT NULL,
    PRIMARY KEY (projection, stream_id)
);

-- One row per plan: what a plan list or a dashboard shows without replaying anything.
CREATE TABLE plan_list (
    stream_id               text        PRIMARY KEY,
    cycle_id                text        NOT NULL,
    unit_id                 text        NOT NULL,
    phase                   text        NOT NULL,
    iteration               integer     NOT NULL,
    current_revision        integer,
    signed_off_revision     integer,
    authors                 text[]      NOT NULL,
    gate_id                 text,
    gate_index              integer,
    pending_approvers       text[]      NOT NULL DEFAULT '{}',
    gate_due_at             timestamptz,
    gate_escalated          boolean     NOT NULL DEFAULT false,
    actuals_overdue_months  text[]      NOT NULL DEFAULT '{}',
    explanations_overdue    integer     NOT NULL DEFAULT 0,
    overdue                 boolean     NOT NULL DEFAULT false,
    last_event_at           timestamptz NOT NULL,
    version                 bigint      NOT NULL
);

CREATE INDEX plan_list_cycle_unit_idx ON plan_list (cycle_id, unit_id);
CREATE INDEX plan_list_pending_idx ON plan_list USING gin (pending_approvers);

-- "Waiting on me": one row per person who can decide a pending seat at a plan's current gate:
-- the seat holder, an active delegate (valid_from/valid_until bound the delegation), or the
-- fallback approver of an escalated gate.
CREATE TABLE approval_inbox (
    approver        text        NOT NULL,
    stream_id       text        NOT NULL,
    seat            text        NOT NULL,
    via             text        NOT NULL CHECK (via IN ('seat', 'delegation', 'fallback')),
    cycle_id        text        NOT NULL,
    unit_id         text        NOT NULL,
    gate_id         text        NOT NULL,
    gate_index      integer     NOT NULL,
    revision        integer     NOT NULL,
    content_hash    text        NOT NULL,
    due_at          timestamptz NOT NULL,
    escalated       boolean     NOT NULL,
    valid_from      timestamptz,
    valid_until     timestamptz
);

CREATE INDEX approval_inbox_approver_idx ON approval_inbox (approver);
CREATE INDEX approval_inbox_stream_idx ON approval_inbox (stream_id);

-- Per plan, measure and month: target, actual and status, as the actuals and monthly reports said.
CREATE TABLE plan_tracking (
    stream_id   text        NOT NULL,
    measure     text        NOT NULL,
    month       text        NOT NULL,
    target      numeric,
    actual      numeric,
    status      text        NOT NULL,
    source      text,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (stream_id, measure, month)
);
