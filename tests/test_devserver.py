"""`make run`'s launcher (`python -m app.dev.server`): its processes live and die with it.

Its children run in process groups of their own (so the terminal's Ctrl-C
reaches only the launcher), and RQ puts its work horse in one too; none of
them may outlive a launcher that was killed outright, a job in progress
included (issue 11, class 12: a calculation was found running 25 minutes
after its launcher had gone).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import redis

from app.jobs.queue import CALCULATION_QUEUE, calculation_queue
from tests.helpers import free_port, title, wait_until

ROOT = Path(__file__).resolve().parent.parent
GONE_WITHIN = 15.0  # seconds: gunicorn's workers notice their master is gone within a second or two


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # dead, not yet reaped by init
    except psutil.NoSuchProcess:
        return True


def test_killing_the_launcher_kills_its_server_worker_work_horse_and_scheduler(app, app_config, servers, tmp_path):
    port = free_port()
    env = {**os.environ, **{key: str(value) for key, value in app_config.items()}, "PORT": str(port),
           "GUNICORN_WORKERS": "1", "GUNICORN_THREADS": "2", "PYTHONUNBUFFERED": "1"}
    log_path = tmp_path / "devserver.log"
    with log_path.open("w") as log:
        launcher = subprocess.Popen([sys.executable, "-m", "app.dev.server"], cwd=ROOT, env=env, stdout=log,
                                    stderr=subprocess.STDOUT, process_group=0)
    family: list[psutil.Process] = []
    client = redis.Redis.from_url(servers.redis_url)
    try:
        wait_until(lambda: "devserver: serving" in log_path.read_text(), timeout=60, what="the launcher started")
        # A job that takes a while, so a work horse is running when the launcher dies.
        queue = calculation_queue(client, app_config["REDIS_NAMESPACE"])
        assert queue.name.endswith(CALCULATION_QUEUE)
        job = queue.enqueue("time.sleep", 120, job_timeout=300)
        wait_until(lambda: job.get_status(refresh=True) == "started", timeout=60, what="the job started")
        family = psutil.Process(launcher.pid).children(recursive=True)
        commands = [title(process) for process in family]
        assert any("gunicorn" in command for command in commands), commands
        assert any("scheduler" in command for command in commands), commands
        # RQ retitles its processes: the worker "rq:worker:<name>: ...", its work horse "...: Processing ...".
        (worker,) = [process for process in family if process.ppid() == launcher.pid
                     and "rq:worker" in title(process)]
        assert any("Processing time.sleep" in title(child) for child in worker.children()), commands

        launcher.send_signal(signal.SIGKILL)
        launcher.wait()
        try:
            wait_until(lambda: all(gone(process.pid) for process in family), timeout=GONE_WITHIN)
        except AssertionError:
            survivors = [title(process) for process in family if not gone(process.pid)]
            raise AssertionError(f"still running {GONE_WITHIN} s after the launcher was killed: {survivors}") from None
    finally:
        for process in family:  # whatever the outcome, leave nothing running
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
        client.close()
        print(log_path.read_text())
