-- Facts the domain computes per ticket when the SLA worker saves it (services/domain/campaigns.cohort_facts and
-- services/domain/scorecards.unit_facts), so that campaign evaluations and unit scorecards are count queries
-- instead of a walk over every ticket state in Python. A ticket's rows are replaced in the transaction that saves
-- the ticket; they are derived data (no unique keys: a save deletes and inserts them in one statement).

-- Tickets enrolled in a campaign (by the event's campaigns list or by the campaign's selector rules).
CREATE TABLE campaign_members (
    campaign_id text        NOT NULL,
    ticket_id   text        NOT NULL,
    opened_at   timestamptz NOT NULL
);
CREATE INDEX campaign_members_ticket_idx ON campaign_members (ticket_id);
CREATE INDEX campaign_members_opened_idx ON campaign_members (campaign_id, opened_at);

-- The periods in which an enrolled ticket counts as done for the campaign: [done_from, done_until).
CREATE TABLE campaign_spans (
    campaign_id text        NOT NULL,
    ticket_id   text        NOT NULL,
    opened_at   timestamptz NOT NULL,
    done_from   timestamptz NOT NULL,
    done_until  timestamptz                       -- NULL: for good
);
CREATE INDEX campaign_spans_ticket_idx ON campaign_spans (ticket_id);
CREATE INDEX campaign_spans_done_idx ON campaign_spans (campaign_id, done_from) INCLUDE (done_until, opened_at);

-- Scorecard facts per (jurisdiction, unit): one row per dispatch cycle, return, callback and open ticket, and one
-- per period in which a cycle's resolution is judged or an open ticket is overdue. A row counts at `now` when
-- counts_from <= now (NULL: always) and, for periods, now < counts_until (NULL: for good).
CREATE TABLE unit_facts (
    ticket_id        text        NOT NULL,
    jurisdiction     text        NOT NULL,
    unit             text        NOT NULL,
    opened_at        timestamptz NOT NULL,        -- the ticket's opening: the scorecards' window
    ticket_open      boolean     NOT NULL,        -- the ticket is open for a unit: always in the window
    kind             text        NOT NULL,        -- cycle | return | callback | open | resolve_judged | overdue
    counts_from      timestamptz,
    counts_until     timestamptz,
    dispatch         boolean     NOT NULL,        -- cycle rows: a dispatch (not a re-handling)
    ack_judged_from  timestamptz,                 -- cycle rows: each counts once <= now
    ack_in_time_from timestamptz,
    resolved_from    timestamptz,
    on_time_from     timestamptz,
    satisfied        boolean     NOT NULL,        -- callback rows
    reopened         boolean     NOT NULL
);
CREATE INDEX unit_facts_ticket_idx ON unit_facts (ticket_id);

-- Progress of (re)computing the facts of tickets saved before this migration, or before the campaign definitions
-- changed: the SLA worker walks the tickets in id order and evaluates campaigns only once this is complete.
CREATE TABLE facts_backfill (
    id        integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    facts_key text    NOT NULL,                   -- the version of the facts and the campaign definitions
    done_upto text    NOT NULL,                   -- tickets with ids up to this one are done
    complete  boolean NOT NULL
);
