"""Separation methods: one module per method, found by id through the registry."""
from choirbench.methods.base import Method, available, get, register

__all__ = ["Method", "available", "get", "register"]
