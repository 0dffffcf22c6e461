"""Property-based fuzzing of the JSON API from its own OpenAPI document (schemathesis).

Every generated request, valid or not, must get an answer that the document
describes (status, content type, body schema), and never a 5xx. Bounded to a
few dozen examples per operation so it runs in seconds.

One check is left out: "schema-valid data is accepted". Some of our rules
cannot be said in JSON Schema (an `integer` there admits `20.0`, which we
refuse as a float; `occurred_at` may not lie more than five minutes ahead),
so valid-by-schema requests are rightly refused with a documented 400.
"""
from __future__ import annotations

import pytest
import schemathesis
from schemathesis import checks
from hypothesis import HealthCheck, given, settings

EXAMPLES_PER_OPERATION = 40
TOKEN = "fuzz-full-access-token"


@pytest.fixture
def app_config(app_config):
    """Access control on, as the document says; no recalculation or read budget, so every request reaches
    the code."""
    return {**app_config, "API_TOKENS_FULL": TOKEN, "ADMIN_PASSWORD_HASH": "scrypt:unused",
            "RATE_LIMIT_RECALCULATE": "", "RATE_LIMIT_READ": ""}


def test_every_answer_conforms_to_the_document(app):
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 7
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def conforms(case: schemathesis.Case) -> None:
            case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"},
                                   excluded_checks=[checks.positive_data_acceptance])

        try:
            conforms()
        except Exception as exc:
            raise AssertionError(f"{operation.label}: {exc}") from exc
