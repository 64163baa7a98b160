-- The plan figures read model: each plan's key figures (domain.rollup.PlanFigures as JSON), so a
-- cycle's roll-up reads one small row per plan instead of the cycle's workflow holding them all.
CREATE TABLE plan_figures (
    stream_id  text   PRIMARY KEY,
    cycle_id   text   NOT NULL,
    unit_id    text   NOT NULL,
    version    bigint NOT NULL,
    figures    jsonb  NOT NULL
);

CREATE INDEX plan_figures_cycle_idx ON plan_figures (cycle_id);
