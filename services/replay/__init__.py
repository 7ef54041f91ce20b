"""Offline replay: intake → router → SLA in event time, over the same domain functions as the workers."""
