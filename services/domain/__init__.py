"""The pure domain core: rules, classification, lifecycle, clocks and campaigns.

Nothing in this package performs I/O or imports faust, aiokafka, asyncpg or prometheus_client
(a test enforces it). Time, rules and policies are passed in; that is what makes the offline
replay give the same answers as the streaming workers.
"""
