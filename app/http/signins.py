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
from dataclasses import dataclass

from redis import Redis

from ..core.settings import Settings
from ..jobs.queue import namespaced


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
