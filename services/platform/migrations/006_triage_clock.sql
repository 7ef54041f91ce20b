-- The dispatch desk's clock (policies.yaml defaults.triage, escalation kind triage_overdue): a ticket waiting in
-- triage now has a next check, the moment its wait passes the desk's limit. Tickets stored in triage by earlier
-- versions have none, so the SLA worker's sweep, which reads only tickets with next_check <= now, would never see
-- them. Make them due at once: the next sweep plans their clock from the stored history, raises what is already
-- due (a ticket that has waited for days gets its levels in one sweep, each with its deterministic id, once) and
-- stores the real next check. Tickets in any other status keep theirs: nothing about them changed.
UPDATE tickets SET next_check = opened_at WHERE status = 'triage' AND next_check IS NULL;
