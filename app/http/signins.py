"""Dashboard sign-ins, recorded on the server, so that signing out or going idle ends them for good.

The session cookie is only signed: on its own, a copy taken before sign-out
would keep working until it expired. So each sign-in gets a random id, kept in
the cookie and as a Redis key (under REDIS_NAMESPACE) holding the user and the
sign-in's absolute deadline (SESSION_LIFETIME_SECONDS). Every dashboard request
looks it up, and the same round trip (GETEX) pushes its expiry SESSION_IDLE_SECONDS
ahead; signing out deletes it, and an idle one expires on its own.

Why Redis rather than PostgreSQL: a sign-in is short-lived state whose natural
end is an expiry. Redis expires idle keys by itself (no table growing with
every sign-in, no job sweeping it, no migration), and the lookup that renews
the idle timeout is one round trip. Losing Redis's data only signs everyone
out, the safe direction. While Redis is unreachable a sign-in cannot be
checked, so it is refused (the caller answers 503), never assumed.
"""
from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from flask import session
from redis import Redis

from ..core.settings import Settings
from ..extensions import guarded_redis, settings
from ..jobs.queue import namespaced

# The session keys of a sign-in: who, and the id of its record on the server.
USER_KEY = "user"
SIGNIN_KEY = "signin"
UNAVAILABLE = "Sign-ins cannot be checked right now; try again in a moment."


@dataclass(frozen=True)
class SignIns:
    """The sign-in records of one deployment: a Redis client, the key namespace and the two timeouts."""

    redis: Redis
    namespace: str
    idle_seconds: int
    lifetime_seconds: int

    @classmethod
    def of(cls, redis: Redis, settings: Settings) -> SignIns:
        return cls(redis, settings.redis_namespace, settings.session_idle_seconds, settings.session_lifetime_seconds)

    def _key(self, signin_id: str) -> str:
        return namespaced(self.namespace, f"signin:{signin_id}")

    def start(self, user: str) -> str:
        """Record a new sign-in of `user`; returns its id, for the session cookie."""
        signin_id = secrets.token_urlsafe(32)
        record = {"user": user, "deadline": time.time() + self.lifetime_seconds}
        self.redis.set(self._key(signin_id), json.dumps(record), ex=min(self.idle_seconds, self.lifetime_seconds))
        return signin_id

    def user(self, signin_id: str) -> str | None:
        """Who is signed in under this id, renewing its idle timeout; None once it ended, idled or expired."""
        raw = self.redis.getex(self._key(signin_id), ex=self.idle_seconds)
        if raw is None:
            return None
        record = json.loads(raw)
        if time.time() >= record["deadline"]:
            self.end(signin_id)
            return None
        return record["user"]

    def end(self, signin_id: str) -> None:
        """Sign out: every copy of the cookie stops working at once."""
        self.redis.delete(self._key(signin_id))


@contextmanager
def signins() -> Iterator[SignIns]:
    """The sign-in store, over the web requests' Redis client: short timeouts, behind the breaker."""
    with guarded_redis() as redis:
        yield SignIns.of(redis, settings())


def signed_in() -> bool:
    """Whether the session cookie names a sign-in the server still holds, for the user the cookie names.

    Raises a Redis error when that cannot be checked: the caller refuses, never assumes.
    """
    user, signin_id = session.get(USER_KEY), session.get(SIGNIN_KEY)
    if not user or not isinstance(signin_id, str):
        return False
    with signins() as store:
        return store.user(signin_id) == user
