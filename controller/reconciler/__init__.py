"""Wiring: per-rule reconcile and analysis ticks, watches, scheduling, leadership."""
