"""Datasets converted to the prepared format, excerpt lists and training batches."""
