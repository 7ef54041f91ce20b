-- The SLA worker's periodic gauges read only what is recent or still open, so that their cost follows the scorecard
-- window (HOTLINE_SCORECARD_WINDOW_DAYS) and the open work, not the whole history (store.unit_scores,
-- store.triage_backlog). Building these on a large existing table blocks writes to it while they are built.
CREATE INDEX unit_facts_opened_idx ON unit_facts (opened_at);
CREATE INDEX unit_facts_open_idx ON unit_facts (opened_at) WHERE ticket_open;
CREATE INDEX tickets_triage_idx ON tickets (jurisdiction) WHERE status = 'triage';
