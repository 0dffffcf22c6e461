"""HTTP plumbing shared by every blueprint: auth, CORS, trusted proxies, rate limits, headers, sessions
and sign-ins, JSON, errors, logs.

May import `app.core`, `app.services` and `app.jobs`; never `app.api` or `app.web`,
which build on it.
"""

# Methods that change nothing: no CSRF token.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Where the JSON API lives: stateless (no cookie session), errors in the JSON envelope.
API_PREFIX = "/api/"
