"""Core: settings, database engines, tables, time and window arithmetic, input rules, domain errors.

Plain Python and SQLAlchemy; imports nothing of Flask or werkzeug, and no other
package of `app` (everything else builds on it).
"""
