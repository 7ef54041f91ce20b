-- The dispatch desk's review of an extension request (policies.yaml defaults.extension_review, escalation kind
-- extension_review_overdue): a ticket whose unit waits for the desk's review (延期审核) now has a next check no later
-- than the review's deadline. Tickets stored with a request pending by earlier versions have a next check that does
-- not know that clock (or none), so make them due from the request's time on: the next sweep plans the review's
-- clock from the stored history, raises what is already due (each level once, by its deterministic id) and stores
-- the real next check. LEAST keeps an earlier next check and takes the request's time where there was none.
UPDATE tickets
   SET next_check = LEAST(next_check, (state #>> '{cycles,-1,extension_request,requested_at}')::timestamptz)
 WHERE status IN ('dispatched', 'acknowledged', 'reopened')
   AND jsonb_typeof(state #> '{cycles,-1,extension_request}') = 'object';
