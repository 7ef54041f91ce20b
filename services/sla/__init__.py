"""SLA: follows each work order on working-day clocks, escalates, and tracks campaign targets."""
