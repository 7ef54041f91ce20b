-- Inputs that name a ticket this worker does not know yet, or a re-dispatch it has not seen yet. Kafka orders the
-- messages of one partition of one topic, not those of two topics (a unit's acknowledgement can reach the SLA
-- worker before the work order it acknowledges) nor a message a crashed worker's relay sends late. Such an input
-- waits here and is applied once what it needs has arrived (Runtime.retry_held, every second); one that waits
-- longer than HOTLINE_HOLD_SECONDS becomes the dead letter it would have been. Later inputs of a ticket with held
-- inputs wait behind them, so that a ticket's inputs apply in the order they came.
CREATE TABLE held_inputs (
    service    text        NOT NULL,
    input_key  text        NOT NULL,          -- service:topic:partition:offset, as in processed_inputs
    ticket_id  text        NOT NULL,
    topic      text        NOT NULL,
    partition  integer     NOT NULL,
    "offset"   bigint      NOT NULL,
    headers    jsonb       NOT NULL,          -- [[name, value], ...] (CloudEvents binary mode)
    raw        bytea       NOT NULL,
    reason     text        NOT NULL,          -- why it waits: the rejection it would be, or held_behind (an
                                              -- earlier input of its ticket is held: it waits behind it, in order)
    field      text,
    error      text        NOT NULL,
    held_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (service, input_key)
);
CREATE INDEX held_inputs_age_idx ON held_inputs (service, held_at);
CREATE INDEX held_inputs_ticket_idx ON held_inputs (service, ticket_id);
