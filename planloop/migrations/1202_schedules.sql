-- planloop's Temporal Schedules: the schedule itself lives in Temporal; this row says which of
-- Temporal's schedules are planloop's, what was asked for, and by whom.
CREATE TABLE schedules (
    schedule_id  text        PRIMARY KEY,
    kind         text        NOT NULL CHECK (kind IN ('open_cycle', 'actuals_reminder')),
    request      jsonb       NOT NULL,
    created_by   text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
