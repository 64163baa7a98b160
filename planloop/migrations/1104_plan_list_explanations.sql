-- Who owes an explanation: the owners of a plan's unexplained deviations while it tracks actuals, so
-- "waiting on me" finds theirs in the plan list instead of reading every plan's stored state.
ALTER TABLE plan_list ADD COLUMN explanations_owed_by text[] NOT NULL DEFAULT '{}';
CREATE INDEX plan_list_explanations_idx ON plan_list USING gin (explanations_owed_by);

-- Rows written before this column cannot know it: the plan list is built again from the event store (the
-- projector replays the feed into it from the start, batch by batch, as `planloop readmodels rebuild` does).
DELETE FROM plan_list;
DELETE FROM projection_plan_states WHERE projection = 'plan_list';
UPDATE projection_checkpoints SET cursor_tx = 0, cursor_pos = 0, updated_at = now() WHERE name = 'plan_list';
