"""The demo: a realistic sample, the embedded stack, and a feeder that drives the three workers."""
