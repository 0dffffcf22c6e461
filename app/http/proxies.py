"""Trusted proxies: which hops in front of the app may state the client's address, scheme and host.

Rate limits key clients without a verified token by address. Behind a proxy
every connection comes from the proxy, so its `X-Forwarded-For` must name the
client; but anyone can send that header, so it is believed only from the last
`TRUSTED_PROXIES` hops (werkzeug's ProxyFix). The default, 0, trusts none:
the address is the connection's, and a forged header changes nothing.
Compose's nginx replaces whatever the client sent with the address it sees,
and compose sets `TRUSTED_PROXIES=1` for web.
"""
from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from ..core.settings import Settings


def init_app(app: Flask, settings: Settings) -> None:
    hops = settings.trusted_proxies
    if hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
