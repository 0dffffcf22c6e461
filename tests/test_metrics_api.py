"""`/api/metrics`: listing, triggering and following jobs, with a real RQ worker on real Redis."""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from app.core.times import format_rfc3339
from app.extensions import runtime, settings
from app.jobs.queue import calculation_queue, namespaced_id
from app.jobs.storage import STORAGE_FUNC
from app.jobs.calculations import CALCULATE_FUNC
from app.dev.fixtures import drop_namespace
from tests.helpers import catch_up_held_at, post_event, separate_app, wait_until

UTC = timezone.utc
DAY0 = datetime(2025, 10, 20, tzinfo=UTC)


def store(client, user_id, when, action="page_view"):
    response = post_event(client, user_id=user_id, action=action, occurred_at=when.isoformat())
    assert response.status_code == 201


def wait_for_job(client, url, timeout=30.0):
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(url).get_json()["job"]
        if not seen or seen[-1] != job["status"]:
            seen.append(job["status"])
        if job["status"] in ("finished", "failed"):
            return job, seen
        time.sleep(0.05)
    raise AssertionError(f"job did not finish; statuses seen: {seen}")


def test_post_metrics_queues_a_job_and_a_second_press_returns_the_same_job(app, client):
    first = client.post("/api/metrics")
    assert first.status_code == 202
    job = first.get_json()["job"]
    assert job["status"] == "queued"
    assert job["url"] == f"/api/metrics/jobs/{job['id']}"
    second = client.post("/api/metrics")
    assert second.status_code == 202
    assert second.get_json()["job"]["id"] == job["id"]
    with app.app_context():
        assert len(calculation_queue(runtime().background_redis, settings().redis_namespace)) == 1
    ranged = client.post("/api/metrics", json={"from": "2025-10-20T00:00:00Z", "till": "2025-10-21T00:00:00Z"})
    assert ranged.get_json()["job"]["id"] != job["id"]


@pytest.mark.parametrize(("body", "field"), [
    ({"from": "2025-10-20T00:00:00Z"}, "till"),
    ({"till": "2025-10-20T00:00:00Z"}, "from"),
    ({"from": "2025-10-21T00:00:00Z", "till": "2025-10-20T00:00:00Z"}, "till"),
    ({"from": "2025-10-257T00:00:00Z", "till": "2025-10-20T00:00:00Z"}, "from"),
    ({"since": "2025-10-20T00:00:00Z"}, "since"),
])
def test_post_metrics_validates_its_optional_range(client, body, field):
    response = client.post("/api/metrics", json=body)
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == field


@pytest.mark.parametrize("job_id", ["nope", "%3B", "a" * 129, "..%2F..%2Fetc"])
def test_unknown_job_is_404(client, job_id):
    response = client.get(f"/api/metrics/jobs/{job_id}")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_real_worker_runs_the_calculation_and_metrics_appear(client, worker):
    store(client, 321, DAY0 + timedelta(hours=1))
    store(client, 321, DAY0 + timedelta(hours=2), action="click")
    store(client, 322, DAY0 + timedelta(hours=5))
    job = client.post("/api/metrics").get_json()["job"]
    assert job["status"] == "queued"
    done, seen = wait_for_job(client, job["url"])
    assert seen[0] == "queued" and seen[-1] == "finished", seen
    assert done["summary"]["users"] == 2
    assert done["summary"]["events"] == 3
    assert done["summary"]["from"] == "2025-10-20T00:00:00.000000Z"

    metrics = client.get("/api/metrics?user_id=321&from=2025-10-20T00:00:00Z&till=2025-10-21T00:00:00Z")
    assert metrics.status_code == 200
    assert metrics.get_json()["metrics"] == [{
        "user_id": 321,
        "event_count": 2,
        "window_start_at": "2025-10-20T00:00:00.000000Z",
        "window_end_at": "2025-10-20T04:00:00.000000Z",
        "created_at": metrics.get_json()["metrics"][0]["created_at"],
        "actions": {"page_view": 1, "click": 1},
    }]


def test_a_failing_job_reports_failed_with_its_error(app, client, worker):
    with app.app_context():
        job = calculation_queue(runtime().background_redis, settings().redis_namespace).enqueue_call(CALCULATE_FUNC, kwargs={"start": "not-a-time", "end": "x"},
                                           job_id=f"{settings().redis_namespace}-failing")
    done, _ = wait_for_job(client, f"/api/metrics/jobs/{job.id}")
    assert done["status"] == "failed"
    assert "RFC 3339" in done["error"]


def test_list_metrics_orders_by_window_then_user_and_pages(client, runner):
    for user_id in (2, 1):
        for hours in (1, 5, 9):
            store(client, user_id, DAY0 + timedelta(hours=hours))
    assert runner.invoke(args=["calculate-metrics"]).exit_code == 0
    first = client.get("/api/metrics?limit=4").get_json()
    keys = [(m["window_start_at"], m["user_id"]) for m in first["metrics"]]
    assert keys == [("2025-10-20T00:00:00.000000Z", 1), ("2025-10-20T00:00:00.000000Z", 2),
                    ("2025-10-20T04:00:00.000000Z", 1), ("2025-10-20T04:00:00.000000Z", 2)]
    rest = client.get(f"/api/metrics?limit=4&cursor={first['next_cursor']}").get_json()
    assert [(m["window_start_at"][11:13], m["user_id"]) for m in rest["metrics"]] == [("08", 1), ("08", 2)]
    assert rest["next_cursor"] is None
    ranged = client.get("/api/metrics?user_id=2&from=2025-10-20T04:00:00Z&till=2025-10-20T08:00:00Z").get_json()
    assert [(m["user_id"], m["event_count"]) for m in ranged["metrics"]] == [(2, 1)]


def test_paging_reaches_every_user_whatever_the_length_of_their_id(client, runner):
    """Cursors name the last user id: ids of any length, up to the largest, must lead to the next page."""
    users = (1, 123456789, 2**63 - 1)
    for user_id in users:
        store(client, user_id, DAY0 + timedelta(hours=1))
    store(client, 1, DAY0 + timedelta(hours=5))  # so a cursor names the largest id
    assert runner.invoke(args=["calculate-metrics"]).exit_code == 0
    seen, cursor = [], None
    for _ in range(len(users) + 2):
        page = client.get("/api/metrics", query_string={"limit": 1, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.get_json()
        seen += [m["user_id"] for m in page.get_json()["metrics"]]
        cursor = page.get_json()["next_cursor"]
        if cursor is None:
            break
    assert seen == [*users, 1]


def test_original_readme_metrics_requests_work(client):
    assert client.post("/api/metrics").status_code == 202
    response = client.get("/api/metrics?user_id=321&from=2025-10-23T13%3A07%3A18.392Z"
                          "&till=2025-10-25T22%3A07%3A18.392Z")
    assert response.status_code == 200
    assert response.get_json() == {"metrics": [], "next_cursor": None}


@pytest.mark.parametrize(("query", "field"), [
    ("user_id=x", "user_id"),
    ("from=2025-10-257T22:07:00.000Z", "from"),
    ("from=2025-10-24T00:00:00Z&till=2025-10-23T00:00:00Z", "till"),
    ("limit=5000", "limit"),
    ("cursor=zzz", "cursor"),
    ("action=click", "action"),
])
def test_list_metrics_validation(client, query, field):
    response = client.get(f"/api/metrics?{query}")
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == field


def test_include_open_adds_the_windows_in_progress_apart_from_the_stored_list(client, runner):
    store(client, 321, DAY0 + timedelta(hours=1))
    now = datetime.now(UTC).replace(microsecond=0)
    store(client, 321, now)
    store(client, 321, now, action="click")
    store(client, 322, now, action="click")
    assert runner.invoke(args=["calculate-metrics"]).exit_code == 0
    stored = client.get("/api/metrics").get_json()
    assert "open_windows" not in stored, "by default: the stored, final windows only"
    assert [m["window_start_at"] for m in stored["metrics"]] == ["2025-10-20T00:00:00.000000Z"]

    body = client.get("/api/metrics?include_open=true").get_json()
    assert body["metrics"] == stored["metrics"] and body["next_cursor"] is None
    current = [w for w in body["open_windows"] if w["window_start_at"] <= format_rfc3339(now) < w["window_end_at"]]
    assert len(current) == 1 and len(body["open_windows"]) in (1, 2)  # two in the settle time after a boundary
    assert current[0]["event_count"] == 3 and current[0]["user_count"] == 2
    assert current[0]["actions"] == {"page_view": 1, "click": 2}
    assert current[0]["final"] is False and current[0]["as_of"] >= format_rfc3339(now)

    mine = client.get("/api/metrics?include_open=true&user_id=322").get_json()["open_windows"]
    assert [(w["event_count"], w["user_count"], w["actions"]) for w in mine if w["event_count"]] == [
        (1, 1, {"click": 1})]
    past = client.get("/api/metrics?include_open=true&till=2025-10-21T00:00:00Z").get_json()
    assert past["open_windows"] == [], "only windows whose start lies in [from, till)"
    assert client.get("/api/metrics?include_open=false").get_json() == stored


def test_include_open_takes_true_or_false_only(client):
    response = client.get("/api/metrics?include_open=yes")
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == "include_open"


def test_a_long_catch_up_shows_its_progress_in_the_job(app_config, client, worker):
    first = DAY0 - timedelta(hours=4) * 1000
    with catch_up_held_at(client.application, 9, first, windows=1000, held=700) as held:
        job = client.post("/api/metrics").get_json()["job"]
        # a fast worker may have started already, but it cannot have counted past the held window
        assert job["progress"] is None or job["progress"]["done"] <= 700
        seen: list[int] = []

        def progress() -> dict | None:
            current = client.get(job["url"]).get_json()["job"]
            if current["progress"] is not None:
                seen.append(current["progress"]["done"])
            return current if seen and seen[-1] == 700 else None

        blocked = wait_until(progress, what="the run counts up to the held window")
        assert blocked["status"] == "started"
        assert blocked["progress"] == {"done": 700, "total": 1000, "window": format_rfc3339(held)}
    done, _ = wait_for_job(client, job["url"])
    assert done["summary"]["windows"] == 1000
    assert done["progress"] == {"done": 1000, "total": 1000, "window": None}
    seen.append(done["progress"]["done"])
    assert seen == sorted(seen) and seen[-1] == 1000, f"progress only rises: {seen}"


def test_a_job_of_another_namespace_sharing_the_redis_is_not_found(app, client, app_config, servers):
    # `<namespace>-b` also starts with `<namespace>-`: the id's prefix alone would not tell them apart.
    other_namespace = f"{app_config['REDIS_NAMESPACE']}-b"
    try:
        with separate_app({**app_config, "REDIS_NAMESPACE": other_namespace}) as other:
            theirs = other.test_client().post("/api/metrics").get_json()["job"]
            assert other.test_client().get(theirs["url"]).status_code == 200
        response = client.get(theirs["url"])
        assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"
        assert client.get(f"/metrics/jobs/{theirs['id']}").status_code == 404
        ours = client.post("/api/metrics").get_json()["job"]
        assert ours["id"] != theirs["id"] and client.get(ours["url"]).status_code == 200
    finally:
        drop_namespace(servers.redis_url, other_namespace)


def test_the_storage_job_sharing_the_calculation_queue_is_not_a_job_to_follow(app, client):
    """Its id is ours and its queue is ours, but it is no calculation: 404, not its result as a summary."""
    with app.app_context():
        namespace = settings().redis_namespace
        queue = calculation_queue(runtime().background_redis, namespace)
        storage = queue.enqueue(STORAGE_FUNC, job_id=namespaced_id(namespace, "periodic-maintain-storage-test"))
        calculation = client.post("/api/metrics").get_json()["job"]
        try:
            response = client.get(f"/api/metrics/jobs/{storage.id}")
            assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"
            assert client.get(calculation["url"]).status_code == 200
        finally:
            storage.delete()
