"""Security headers on every kind of response."""
from __future__ import annotations

import pytest


@pytest.mark.parametrize(("method", "path"), [
    ("get", "/api/events"),
    ("get", "/api/nothing"),
    ("post", "/api/event"),
    ("get", "/"),
])
def test_every_response_carries_the_security_headers(client, method, path):
    response = getattr(client, method)(path)
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
