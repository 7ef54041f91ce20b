"""Intake: validates and normalises every event, merges repeats, dead-letters what is broken."""
