"""Metrics, the long results table, aggregation, tables and figures."""
