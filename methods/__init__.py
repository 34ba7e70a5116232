"""Separation methods: one module per method, each registering its class with
:func:`choirbench.registry.register`; the machinery that runs them (registry, harness,
training loop, checkpoints) lives in :mod:`choirbench`."""
