"""`mutmut run`, with each mutant's tests narrowed for the functions every request passes through.

mutmut runs each mutant against every test that reached its function while
it collected its stats. Settings, JSON decoding, the bearer token, rate
limits and log lines are reached by nearly every test, so each of their
mutants that survives would cost a run of the whole selection. Their mutants
run only the test files about them (`OWN_TESTS`). Narrowing can only lower
the score: a test left out can no longer kill anything. The other way round,
functions that run only in processes the tests fork get their test files
added (`FORKED_TESTS`), since mutmut sees no test reach them.

Run by `python -m mutation` in a process of its own, which must not import
`app` before mutmut puts `mutants/` first on the path.
"""
from __future__ import annotations

import argparse
from pathlib import Path

# A function reached by more tests than this runs only its module's own test files.
NARROW_ABOVE = 40
OWN_TESTS: dict[str, tuple[str, ...]] = {
    "app.core.settings": ("test_config", "test_error_messages", "test_auth", "test_limits", "test_security_checks"),
    "app.core.logs": ("test_logging", "test_log_values"),
    "app.core.errors": ("test_error_messages", "test_bad_input", "test_events_api", "test_events_batch",
                        "test_metrics_api"),
    "app.core.times": ("test_error_messages", "test_events_api", "test_bad_input", "test_web_units", "test_windows",
                       "test_unusual_inputs", "test_metrics_api", "test_logging"),
    "app.core.validation": ("test_error_messages", "test_bad_input", "test_events_api", "test_events_batch",
                            "test_unusual_inputs", "test_metrics_api", "test_web_units", "test_web_events",
                            "test_request_bodies", "test_declared_errors"),
    "app.core.declarations": ("test_error_messages", "test_bad_input", "test_request_bodies", "test_declared_errors",
                              "test_events_batch", "test_metrics_api"),
    "app.core.list_parameters": ("test_error_messages", "test_events_api", "test_events_export", "test_metrics_api",
                                 "test_bad_input", "test_unusual_inputs", "test_declared_errors"),
    "app.services.events": ("test_events_api", "test_events_batch", "test_events_export", "test_write_path",
                            "test_unusual_inputs", "test_error_messages", "test_dashboard_queries", "test_web_events"),
    "app.http.auth": ("test_auth", "test_limits", "test_security_checks", "test_telemetry"),
    "app.http.rate_limits": ("test_limits", "test_security_checks", "test_auth"),
    "app.http.csrf": ("test_security_checks", "test_web_login", "test_limits"),
    "app.http.policy": ("test_policies", "test_auth", "test_limits", "test_security_checks", "test_web_login",
                        "test_headers", "test_telemetry", "test_original_clients", "test_signins"),
    # every rate-limited request and every single event passes through these; their own tests start
    # threads and wait on them, so a mutant running all the others would cost minutes
    "app.runtime.budget_counts": ("test_budget_counts", "test_limits", "test_security_checks", "test_auth"),
    "app.runtime.group_commit": ("test_group_commit", "test_events_api", "test_write_path"),
    "app.runtime": ("test_runtime", "test_group_commit", "test_limits", "test_telemetry", "test_health"),
}

# Modules whose functions run in processes their tests fork (a `preexec_fn`, a fork hook): mutmut
# records the tests that reach a function in the test process only, so it would run none of these.
FORKED_TESTS: dict[str, tuple[str, ...]] = {
    "app.runtime.lifecycle": ("test_lifetime", "test_runtime"),
}


def narrowed(module: str, tests: set[str]) -> set[str]:
    """The tests a mutant of `module` runs: all that reach it, or its own files' when too many do."""
    own = OWN_TESTS.get(module)
    if own is None or len(tests) <= NARROW_ABOVE:
        return tests
    kept = {test for test in tests if Path(test.split("::", 1)[0]).stem in own}
    return kept or tests


def narrow_stats() -> None:
    """Apply `narrowed` to the test map mutmut has just collected, before it runs any mutant."""
    from mutmut.state import state
    from mutmut.stats import save_stats

    mapping = state().tests_by_mangled_function_name
    for function, tests in list(mapping.items()):
        mapping[function] = narrowed(function.rsplit(".", 1)[0], set(tests))
    collected = set(state().duration_by_test)
    for function in state().current_function_hashes:  # every mutated function, reached or not
        own = FORKED_TESTS.get(function.rsplit(".", 1)[0])
        if own:
            mapping[function] = set(mapping.get(function, ())) | {
                test for test in collected if Path(test.split("::", 1)[0]).stem in own}
    save_stats()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-children", type=int, required=True)
    args = parser.parse_args()
    import mutmut.__main__ as mutmut_cli

    collect = mutmut_cli.collect_or_load_stats

    def collect_then_narrow(*positional: object, **named: object) -> None:
        collect(*positional, **named)
        narrow_stats()

    mutmut_cli.collect_or_load_stats = collect_then_narrow
    mutmut_cli.cli(["run", "--max-children", str(args.max_children)])


if __name__ == "__main__":
    main()
