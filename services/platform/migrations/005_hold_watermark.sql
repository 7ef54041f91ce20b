-- A held input (004) is dead-lettered after HOTLINE_HOLD_SECONDS only once its worker group has read everything
-- that was on the topics that open tickets when the input was held: after an outage, a worker catching up may
-- read a backlog of acknowledgements faster than the backlog of work orders they acknowledge, and the wait must
-- not run out while the work order is still in that backlog.
--
-- input_progress: per service, topic and partition, the offset after the last input committed (the Kafka
-- "next offset"), written in the transaction of the batch that processed it.
-- held_inputs.waits_for: {"topic/partition": offset} — the end of every partition of the ticket-opening topics
-- (the SLA worker: workorders and triage; the router: accepted), read from the broker just after the input was
-- held. NULL until read (the broker was unreachable): such an input is not dead-lettered yet. A partition without
-- an input_progress row (no input of it processed since this migration) does not hold an expiry back.
CREATE TABLE input_progress (
    service     text    NOT NULL,
    topic       text    NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint  NOT NULL,
    PRIMARY KEY (service, topic, partition)
);

ALTER TABLE held_inputs ADD COLUMN waits_for jsonb;
