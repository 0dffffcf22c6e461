"""Services: the commands and queries on events and metrics.

They take a `core.database.Database` and plain values, return dataclasses and
counts, and raise `core.errors`. They may import `app.core` only: no Flask, no
HTTP status, no Redis, no logging of requests; the adapters (api, web, jobs) do that.
"""
