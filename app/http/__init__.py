"""HTTP plumbing shared by every blueprint: each route's policy and the gate that enforces it (access,
CSRF, rate limits, concurrency), tokens and sign-ins, CORS, trusted proxies, the request class, headers,
sessions, JSON, errors, logs.

May import `app.core`, `app.services`, `app.runtime` and `app.jobs`; never `app.api` or `app.web`,
which build on it.
"""

# Methods that change nothing: no CSRF token.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Where the JSON API lives: stateless (no cookie session), errors in the JSON envelope.
API_PREFIX = "/api/"
