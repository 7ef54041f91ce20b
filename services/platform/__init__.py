"""Shared adapters: settings, logging, metrics, the wire codec, PostgreSQL, Kafka topics, Faust apps."""
