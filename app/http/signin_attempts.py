"""How often a dashboard sign-in may be tried: delays that grow with failures, per user name and per known browser.

A hard lockout of the user name would let anyone keep the admin out by
guessing wrong from a few addresses. So, as OWASP suggests against lockout
abuse, a browser that has signed in as a user before holds a signed device
cookie and is judged by its own failures; every other browser shares the
user name's. After SIGN_IN_FREE_FAILURES failures in a row, each further
attempt of that payer waits 1 s, then 2, 4, ... up to
SIGN_IN_MAX_DELAY_SECONDS; a success ends the delay, and an hour without
failures forgets them. Attackers who never had the admin's cookie can only
delay new browsers, never the admin's own. The per-address budget
(RATE_LIMIT_LOGIN, on the route's policy) counts every attempt as well.

The counts live in Redis, as the sign-ins they guard do: while it cannot
be asked, every attempt gets the same 503 before its password is looked at,
so an outage never turns the form into an oracle.
"""
from __future__ import annotations

import hashlib
import secrets
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from flask import Response, current_app, request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from redis import Redis

from ..core.settings import Settings
from ..extensions import guarded_redis, now, settings
from ..jobs.queue import namespaced

DEVICE_COOKIE = "device"
DEVICE_DAYS = 365
FORGET_SECONDS = 3600


def user_name_key(username: str) -> str:
    """The submitted user name, normalised (case, width, surrounding space) and hashed into a short key."""
    name = unicodedata.normalize("NFKC", username).strip().casefold()
    return hashlib.sha256(name.encode()).hexdigest()[:32]


def _devices(config: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(config.secret_key, salt="sign-in-device")


def known_device(username: str) -> str | None:
    """The id of this browser's device cookie, if it is genuine, young enough and was given to this user name."""
    cookie = request.cookies.get(DEVICE_COOKIE)
    if not cookie:
        return None
    try:
        claim: Any = _devices(settings()).loads(cookie, max_age=DEVICE_DAYS * 86400)
    except BadSignature:
        return None
    if not isinstance(claim, dict) or claim.get("user") != user_name_key(username):
        return None
    device = claim.get("device")
    return device if isinstance(device, str) else None


def remember_device(response: Response, username: str, device: str | None) -> None:
    """Give the browser that just signed in its device cookie (a new one unless it held one for this user)."""
    claim = {"user": user_name_key(username), "device": device or secrets.token_urlsafe(16)}
    response.set_cookie(DEVICE_COOKIE, _devices(settings()).dumps(claim), max_age=DEVICE_DAYS * 86400,
                        path="/login", httponly=True, samesite="Strict",
                        secure=current_app.session_interface.get_cookie_secure(current_app))


def payer(username: str, device: str | None) -> str:
    """Whose failures an attempt counts toward: the known browser's own, else the user name's."""
    return f"device:{device}" if device else f"user:{user_name_key(username)}"


# One round trip that judges and claims an attempt at once: refused (seconds to wait) while the payer's delay
# runs, else counted as a failure right away, so attempts sent together cannot all pass one check. A success
# then deletes the count. KEYS[1]: the payer's hash; ARGV: now, free failures, longest delay, seconds to keep.
_CLAIM = """
local failures = tonumber(redis.call('HGET', KEYS[1], 'failures') or '0')
local last = tonumber(redis.call('HGET', KEYS[1], 'last') or '0')
local now, free, longest = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if failures >= free then
  local delay = math.min(2 ^ math.min(failures - free, 32), longest)
  if now < last + delay then
    return math.ceil(last + delay - now)
  end
end
redis.call('HINCRBY', KEYS[1], 'failures', 1)
redis.call('HSET', KEYS[1], 'last', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 0
"""


@dataclass(frozen=True)
class SignInAttempts:
    """Attempts in a row without a success per payer, in Redis, and the delay they impose on the next one."""

    redis: Redis
    namespace: str
    free_failures: int
    max_delay: int

    def _key(self, payer: str) -> str:
        return namespaced(self.namespace, f"signin-failures:{payer}")

    def claim(self, payer: str) -> int | None:
        """Seconds this payer must still wait, or None: the attempt may go on, counted as a failure until
        `succeeded` says otherwise."""
        wait = self.redis.eval(_CLAIM, 1, self._key(payer), repr(now().timestamp()), self.free_failures,
                               self.max_delay, FORGET_SECONDS)
        return int(wait) or None

    def succeeded(self, payer: str) -> None:
        self.redis.delete(self._key(payer))


@contextmanager
def signin_attempts() -> Iterator[SignInAttempts]:
    """The failure counts, over the web requests' Redis client: short timeouts, behind the breaker."""
    config = settings()
    with guarded_redis() as redis:
        yield SignInAttempts(redis, config.redis_namespace, config.sign_in_free_failures,
                             config.sign_in_max_delay_seconds)
