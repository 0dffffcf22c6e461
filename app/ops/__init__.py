"""Ops: what operators and orchestrators read: `/healthz`, `/readyz` and Prometheus at `/internal/metrics`.

May import `app.core`, `app.runtime`, `app.jobs` and `app.http`; never `app.api` or `app.web`.
"""
