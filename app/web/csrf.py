"""The dashboard's CSRF token in its pages (the check itself is the policy gate's: `app.http.csrf`)."""
from __future__ import annotations

from ..http.csrf import session_csrf_token
from . import bp


@bp.app_template_global()
def csrf_token() -> str:
    """This session's token, made on first use, for the page's meta tag and its forms."""
    return session_csrf_token()
