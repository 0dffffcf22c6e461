"""Trusted proxies: which hops in front of the app may state the client's address, scheme and host.

Rate limits key clients without a verified token by address. Behind a proxy
every connection comes from the proxy, so its `X-Forwarded-For` must name the
client; but anyone can send that header, so it is believed only from the last
`TRUSTED_PROXIES` hops (werkzeug's ProxyFix), and only on connections from a
proxy's own address (`TRUSTED_PROXY_ADDRESSES`): a client that reaches the
web server directly, around the proxy, is its connection's address whatever
it writes. The default, 0 hops, trusts none. Compose's nginx replaces
whatever the client sent with the address it sees, and compose sets
`TRUSTED_PROXIES=1` and nginx's fixed address for web.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from ipaddress import ip_address
from typing import TYPE_CHECKING, Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from ..core.settings import Settings

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)


class FromTrustedProxies:
    """ProxyFix for connections from a trusted proxy's address; every other connection is passed on as it came.

    An open service (access control off) ignores `X-Forwarded-Host`: the host it answers to is checked
    (Flask's TRUSTED_HOSTS), and a page rebound to 127.0.0.1, where a trusted proxy also connects from,
    could otherwise name an allowed host in that header while its `Host` is its own.
    """

    def __init__(self, app: WSGIApplication, hops: int, networks: tuple[Any, ...], forwarded_host: bool) -> None:
        self.direct = app
        self.forwarded = ProxyFix(app, x_for=hops, x_proto=hops, x_host=hops if forwarded_host else 0)
        self.networks = networks
        self.ignored_logged = False

    def _trusted(self, peer: str) -> bool:
        try:
            address = ip_address(peer)
        except ValueError:
            return False
        if address.version == 6 and address.ipv4_mapped:  # ::ffff:10.0.0.2 from a dual-stack socket
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        peer = environ.get("REMOTE_ADDR", "")
        if self._trusted(peer):
            return self.forwarded(environ, start_response)
        if not self.ignored_logged and "HTTP_X_FORWARDED_FOR" in environ:
            # once per process: a proxy missing from TRUSTED_PROXY_ADDRESSES makes every client look like it
            self.ignored_logged = True
            log.warning("X-Forwarded-For from %s ignored: not in TRUSTED_PROXY_ADDRESSES (logged once)", peer)
        return self.direct(environ, start_response)


def init_app(app: Flask, settings: Settings) -> None:
    hops = settings.trusted_proxies
    if hops:
        app.wsgi_app = FromTrustedProxies(  # type: ignore[method-assign]
            app.wsgi_app, hops, settings.proxy_networks, forwarded_host=settings.access_control_enabled)
