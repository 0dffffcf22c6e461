"""Jobs: the RQ queue, the job functions, the periodic schedule, the worker loop and the CLI.

Adapters around the services for work done outside a request. May import
`app.core`, `app.services` and `app.runtime`; never `app.http`, `app.api` or `app.web`.
"""
