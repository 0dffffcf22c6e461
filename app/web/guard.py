"""The dashboard's one gate: every request is proven before it is served or charged to a budget.

In this order: the CSRF token (state-changing requests), then the sign-in,
then the rate-limit budget. So a cross-site form post, which carries neither
the session nor its token, is refused before it can spend anything (such as
the admin's sign-in budget), while a wrong password, which passed both
checks, still counts against the sign-in budgets.
"""
from __future__ import annotations

from werkzeug.wrappers import Response as BaseResponse

from ..http.rate_limits import charge_dashboard_request
from . import bp
from .csrf import check_csrf_token
from .login import require_login
from .rendering import message_response


def charge_budget() -> BaseResponse | None:
    """A 429 page (or htmx alert) with Retry-After when this request's budget is spent."""
    refusal = charge_dashboard_request()
    if refusal is None:
        return None
    response = message_response(f"Too many requests from you just now; try again in {refusal.retry_after} s.", 429)
    response.headers["Retry-After"] = str(refusal.retry_after)
    return response


@bp.before_request
def guard() -> BaseResponse | None:
    for check in (check_csrf_token, require_login, charge_budget):
        refused = check()
        if refused is not None:
            return refused
    return None
