"""Core: settings, database engines, tables, time and window arithmetic, input rules, domain errors.

Plain Python and SQLAlchemy: no web framework, no Redis, and no other package
of `app` (everything else builds on it; tests/test_layers.py checks).
"""
