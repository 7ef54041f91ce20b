-- Initial schema. Every write the workers make is an upsert or an insert that ignores conflicts, keyed by a
-- deterministic id, so a redelivered message changes nothing.

CREATE TABLE intake_events (
    event_id     text PRIMARY KEY,
    ticket_id    text        NOT NULL,            -- itself, or the open ticket it was merged into (并单)
    jurisdiction text        NOT NULL,
    source       text        NOT NULL,
    occurred_at  timestamptz NOT NULL,
    address_key  text        NOT NULL,
    content      text        NOT NULL,
    merged       boolean     NOT NULL DEFAULT false,
    payload      jsonb       NOT NULL,            -- the event without the caller (personal data stays out)
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX intake_events_repeat_idx ON intake_events (jurisdiction, address_key, occurred_at);

CREATE TABLE dead_letters (
    dead_letter_id    text PRIMARY KEY,
    stage             text        NOT NULL,
    reason            text        NOT NULL,
    field             text,
    error             text        NOT NULL,
    original          text        NOT NULL,       -- masked, at most 8 KiB of the original
    original_encoding text        NOT NULL,
    original_size     integer     NOT NULL,
    topic             text,
    partition         integer,
    "offset"          bigint,
    received_at       timestamptz NOT NULL,
    recorded_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dead_letters_reason_idx ON dead_letters (stage, reason);

CREATE TABLE router_tickets (
    ticket_id    text PRIMARY KEY,
    jurisdiction text  NOT NULL,
    state        jsonb NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE routing_decisions (
    ticket_id  text        NOT NULL,
    seq        integer     NOT NULL,             -- 1 for the first decision, then one per return
    outcome    text        NOT NULL,
    lead_unit  text,
    category   text,
    decision   jsonb       NOT NULL,
    decided_at timestamptz NOT NULL,
    PRIMARY KEY (ticket_id, seq)
);

CREATE TABLE work_orders (
    work_order_id text PRIMARY KEY,              -- {ticket_id}#{dispatch_seq}
    ticket_id     text        NOT NULL,
    dispatch_seq  integer     NOT NULL,
    jurisdiction  text        NOT NULL,
    lead_unit     text        NOT NULL,
    category      text        NOT NULL,
    dispatched_at timestamptz NOT NULL,
    payload       jsonb       NOT NULL           -- includes the caller: the unit must call back
);
CREATE INDEX work_orders_unit_idx ON work_orders (jurisdiction, lead_unit);

CREATE TABLE tickets (
    ticket_id    text PRIMARY KEY,
    jurisdiction text        NOT NULL,
    source       text        NOT NULL,
    category     text,
    status       text        NOT NULL,
    unit         text,
    campaigns    text[]      NOT NULL DEFAULT '{}',
    opened_at    timestamptz NOT NULL,
    next_check   timestamptz,                    -- the moment of the next escalation still to come
    state        jsonb       NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tickets_next_check_idx ON tickets (next_check) WHERE next_check IS NOT NULL;
CREATE INDEX tickets_campaigns_idx ON tickets USING gin (campaigns);

CREATE TABLE transitions (
    ticket_id   text        NOT NULL,
    update_id   text        NOT NULL,
    seq         integer     NOT NULL,
    action      text        NOT NULL,
    from_status text,
    to_status   text        NOT NULL,
    unit        text,
    at          timestamptz NOT NULL,
    reason      text,
    note        text,
    PRIMARY KEY (ticket_id, update_id)
);

CREATE TABLE escalations (
    escalation_id text PRIMARY KEY,
    kind          text        NOT NULL,
    jurisdiction  text,
    ticket_id     text,
    campaign_id   text,
    unit          text,
    level         integer     NOT NULL,
    threshold     double precision,
    at            timestamptz NOT NULL,
    payload       jsonb       NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX escalations_kind_idx ON escalations (kind, at);

CREATE TABLE campaign_state (
    campaign_id text PRIMARY KEY,
    state       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE campaign_evaluations (
    campaign_id text        NOT NULL,
    at          timestamptz NOT NULL,
    report      jsonb       NOT NULL,
    PRIMARY KEY (campaign_id, at)
);

-- Effectively-once plumbing: an input is processed in one transaction together with its outbox rows;
-- the outbox is published after commit, and re-published by the relay if a worker died in between.
CREATE TABLE processed_inputs (
    input_key    text PRIMARY KEY,
    processed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    service      text        NOT NULL,            -- the worker whose relay re-sends the row
    topic        text        NOT NULL,
    key          text,
    value        bytea       NOT NULL,
    headers      jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished_idx ON outbox (service, id) WHERE published_at IS NULL;

CREATE TABLE sla_clock (
    id  integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    now timestamptz NOT NULL
);
