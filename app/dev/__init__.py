"""Development tooling: `make run`'s launcher, embedded PostgreSQL and Valkey, and the helpers
the tests, the benchmark and the soak share (free ports, throwaway databases, waiting).

Never imported by the request path; it may import anything of `app`.
"""
