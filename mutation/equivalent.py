"""Mutants that no caller can tell from the original, each with the reason; tests/MUTATION.md leaves them out.

Keyed by mutmut's mutant name, or a pattern (`*`) for every mutant of a
function. A name changes when its function changes, so the report lists the
entries that no longer match any mutant, to be reviewed.
"""
from __future__ import annotations

_AT_IMPORT = "runs only at import, before mutmut switches a mutant on, so no test can ever see it"
_SQL_CASE = "SQL keywords and unquoted names are case-insensitive"
_FALSY = "`ensure_ascii=None` is as false as `False`"
_STREAMS = "`yield_per` alone makes SQLAlchemy stream from a server-side cursor (the tests count its FETCHes)"
_PADDING = "the cursor keeps its `=` padding, which decoding accepts: cursors are opaque"
_KEY = "a budget's Redis key only has to differ per client; any prefix or digest length does"
_ONE_ROW = "a `SELECT count(*)` without GROUP BY returns exactly one row, so the `else` is never taken"
_FLAG = "the flag is only ever read as a condition, where `None` is as false as `False`"
_PRCTL = "PR_SET_PDEATHSIG reads only prctl's second argument; the kernel ignores the others"
_UPPER = ("upper-casing digits, `-`, `:`, `+` and `T` changes nothing, and `fromisoformat` takes any character "
          "between date and time: only a lower-case `z` needs it")

EQUIVALENT: dict[str, str] = {
    "app.core.settings.x__setting__mutmut_*": _AT_IMPORT + " (it declares the Settings fields)",
    "app.core.settings.x_settings_table__mutmut_17": "no setting's description holds a `|`, so no escaping happens",
    "app.core.settings.x_settings_table__mutmut_18": "no setting's description holds a `|`, so no escaping happens",
    "app.core.errors.xǁDomainErrorǁ__init____mutmut_1": "every reader of a domain error uses `.message`; `str()` of it "
                                                       "is never shown",
    "app.core.validation.x_check_text__mutmut_10": "codec names are case-insensitive",
    "app.services.calculation.x_calculate_metrics__mutmut_1": "every caller names its trigger (API, button, schedule, CLI)",
    "app.services.calculation.x_calculate_metrics__mutmut_2": "every caller names its trigger (API, button, schedule, CLI)",
    "app.services.events.x_iter_events__mutmut_1": "a tuning constant: any batch size exports the same rows in the "
                                                   "same order (the tests observe that batches are used)",
    "app.services.metrics.x_recent_runs__mutmut_1": "every caller passes its limit (the dashboard shows 10)",
    "app.services.pagination.x_decode_cursor__mutmut_7": "cursors we issue are 4k, 4k+2 or 4k+3 long; padding them "
                                                         "by `len % 4` only adds `=` that base64 ignores",
    "app.services.pagination.x_decode_cursor__mutmut_11": "neither part of a cursor holds a `|`",
    "app.services.pagination.x_decode_cursor__mutmut_14": "the message is replaced by the API's own before anyone sees it",
    "app.services.pagination.x_decode_cursor__mutmut_15": "the message is replaced by the API's own before anyone sees it",
    "app.services.pagination.x_decode_cursor__mutmut_16": "the message is replaced by the API's own before anyone sees it",
    "app.core.logs.xǁStructuredFormatterǁ__init____mutmut_1": "every format but `json` is key=value",
    "app.core.logs.xǁStructuredFormatterǁ__init____mutmut_2": "every format but `json` is key=value",
    "app.core.logs.xǁStructuredFormatterǁformat__mutmut_59": _FALSY,
    "app.core.logs.x__kv_value__mutmut_15": _FALSY,
    "app.core.logs.x__kv_value__mutmut_23": _FALSY,
    "app.services.events.x_record_events__mutmut_5": "the extra fresh ids drawn are never used",
    "app.services.events.x_record_events__mutmut_41": "one statement in a transaction of its own commits as it would alone",
    "app.services.events.x_iter_events__mutmut_14": _STREAMS,
    "app.services.events.x_iter_events__mutmut_7": "both time indexes end in `id` and a cursor's plan reads one in "
                                                   "order, so ties come in id order without the sort key "
                                                   "(tests/test_unusual_inputs.py checks the order)",
    "app.services.events.x_new_event_ids__mutmut_10": "timestamps fit in 48 bits until the year 10889",
    "app.services.events.x_new_event_ids__mutmut_16": "only the first 10 bytes per id of the random bytes are read",
    "app.services.events.x_new_event_ids__mutmut_23": "`from_bytes` reads big-endian by default",
    "app.services.events.x_new_event_ids__mutmut_25": "the mask keeps 74 random bits either way",
    "app.core.validation.x_decode_json_body__mutmut_4": "codec names are case-insensitive",
    "app.services.pagination.x_keyset_page__mutmut_16": "reading more rows than the page needs changes only the cost: "
                                                        "the page and its cursor are cut from them the same way",
    "app.services.pagination.x_keyset_page__mutmut_18": "reading more rows than the page needs changes only the cost: "
                                                        "the page and its cursor are cut from them the same way",
    "app.services.pagination.x_encode_cursor__mutmut_3": _PADDING,
    "app.services.pagination.x_encode_cursor__mutmut_4": _PADDING,
    "app.runtime.breaker.xǁCircuitBreakerǁ__init____mutmut_11": _FLAG,
    "app.runtime.breaker.xǁCircuitBreakerǁsucceeded__mutmut_4": _FLAG,
    "app.runtime.breaker.xǁCircuitBreakerǁfailed__mutmut_8": _FLAG,
    "app.runtime.breaker.xǁCircuitBreakerǁ_release_trial__mutmut_1": _FLAG,
    "app.runtime.lifecycle.x_die_with_parent__mutmut_12": _PRCTL,
    "app.runtime.lifecycle.x_die_with_parent__mutmut_13": _PRCTL,
    "app.runtime.lifecycle.x_die_with_parent__mutmut_14": _PRCTL,
    "app.runtime.lifecycle.x_die_with_parent__mutmut_17": _PRCTL,
    "app.runtime.lifecycle.x_die_with_parent__mutmut_18": _PRCTL,
    "app.runtime.lifecycle.x_die_with_parent__mutmut_19": _PRCTL,
    "app.runtime.lifecycle.x_die_with_parent__mutmut_21": _PRCTL,
    "app.runtime.lifecycle.x_die_with_parent__mutmut_22": _PRCTL,
    "app.runtime.lifecycle.x_die_with_parent__mutmut_23": _PRCTL,
    "app.services.partitions.x__is_missing_partition__mutmut_3": "the default stands only for a missing message, "
                                                                 "and neither it nor `\"\"` names the refusal",
    "app.services.partitions.x_create_partitions__mutmut_13": _SQL_CASE,
    "app.services.partitions.x_create_partitions__mutmut_39": _SQL_CASE,
    "app.services.partitions.x_create_partitions__mutmut_51": _SQL_CASE,
    "app.services.partitions.x_create_partitions__mutmut_20": _SQL_CASE,
    "app.services.retention.x_apply_retention__mutmut_19": _SQL_CASE,
    "app.services.retention.x_apply_retention__mutmut_29": _SQL_CASE,
    "app.services.retention.x__delete_metrics__mutmut_8": _SQL_CASE,
    "app.services.retention.x_drop_partition__mutmut_20": _SQL_CASE,
    "app.services.retention.x_drop_partition__mutmut_29": _SQL_CASE,
    "app.services.retention.x_drop_partition__mutmut_34": _SQL_CASE,
    "app.services.retention.x__count__mutmut_9": _ONE_ROW,
    "app.services.retention.x__count__mutmut_12": _ONE_ROW,
    "app.core.windows.x_window_size__mutmut_6": "its only caller, `Settings.check`, replaces the message with its own "
                                                "naming METRICS_WINDOW_HOURS",
    "app.services.pagination.x_encode_cursor__mutmut_6": "a cursor's last character encodes the last digit or hex "
                                                         "digit of its key, never an `X`, so no more is stripped",
    "app.services.metrics.x_open_windows__mutmut_34": "with `first == last` the series of windows and the events' "
                                                      "range are both empty: the query returns no windows either",
    "app.services.events.x_new_event_ids__mutmut_34": "each id still takes 74 random bits from the random bytes, "
                                                      "one byte further on (the last id's top 8 are then 0)",
    "app.services.events.x__store__mutmut_2": "one statement in a transaction of its own commits as it would alone",
    "app.services.events.x__reject_constant__mutmut_1": "its ValueError is caught at once; the message is never read",
    "app.services.events.x__metadata_condition__mutmut_5": "`NaN` and `Infinity` then parse to floats that the "
                                                           "`isfinite` check turns back into the text",
    "app.services.events.x__metadata_condition__mutmut_7": "`NaN` and `Infinity` then parse to floats that the "
                                                           "`isfinite` check turns back into the text",
    "app.services.events.x_iter_events__mutmut_2": "`list_events` reads a cursor by its truth: `\"\"` starts at the "
                                                   "first row as None does",
    "app.services.calculation.x_calculate_metrics__mutmut_19": "callers give both bounds or neither "
                                                               "(`parse_calculation_range` refuses half a range)",
    "app.services.calculation.xǁ_Pendingǁnext_chunk__mutmut_32": "checking no candidates finds none still unseen: "
                                                                  "an empty set either way",
    "app.services.calculation.x__run__mutmut_7": "the total is only read to tell progress, and there is none to tell",
    "app.services.calculation.x__run__mutmut_10": "the total is only read to tell progress, and there is none to tell",
    "app.services.calculation.x__run__mutmut_64": "with no windows the query counts no users: 0 either way",
    "app.http.auth.x_client_key__mutmut_4": _KEY,
    "app.http.auth.x_client_key__mutmut_5": _KEY,
    "app.http.auth.x_client_key__mutmut_8": "a verified token was sent, so the `or` default is never used",
    "app.http.auth.x_client_key__mutmut_9": _KEY,
    "app.http.auth.x_address_key__mutmut_2": _KEY,
    "app.http.auth.x_address_key__mutmut_3": _KEY,
    "app.http.auth.x_address_key__mutmut_5": _KEY + " (every request without an address shares one)",
    "app.http.auth.x_address_key__mutmut_6": _KEY + " (every request without an address shares one)",
    "app.core.times.x_parse_rfc3339__mutmut_20": _UPPER,
    "app.core.times.x_parse_rfc3339__mutmut_23": _UPPER,
    "app.core.times.x_parse_rfc3339__mutmut_24": _UPPER,
    "app.core.times.x_parse_rfc3339__mutmut_25": _UPPER,
    "app.core.validation.x__check_values__mutmut_30": "without `texts` the raw body holds no `\\u` escape that "
                                                      "could make NUL or a lone surrogate: checking strings finds "
                                                      "nothing",
    "app.core.validation.xǁ_Suspicionsǁof__mutmut_12": "nesting beyond the limit takes the limit plus two brackets "
                                                       "(the event's and the metadata's own): one fewer still walks "
                                                       "every body that needs it",
    "app.runtime.group_commit.xǁGroupCommitǁ__init____mutmut_6": _FLAG,
    "app.runtime.group_commit.xǁGroupCommitǁrecord__mutmut_43": _FLAG,
    "app.runtime.group_commit.xǁGroupCommitǁrecord__mutmut_3": "an event at the current window's first instant is "
                                                                "stored alone instead of with a group: the same row "
                                                                "and the same answer",
}
