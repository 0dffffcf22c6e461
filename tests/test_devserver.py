"""`make run`'s launcher (`python -m app.dev.server`): its processes live and die with it, and the
CLI and psql work beside it.

Its children run in process groups of their own (so the terminal's Ctrl-C
reaches only the launcher), and RQ puts its work horse in one too; none of
them may outlive a launcher that was killed outright, a job in progress
included (issue 11, class 12: a calculation was found running 25 minutes
after its launcher had gone).

In a second terminal, `make cli` and `make psql` find the launcher's servers
through the run file it writes; an entry point started without a usable
setting says which in one line, not a traceback.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import redis

from app.dev.embedded import start_redis
from app.jobs.queue import CALCULATION_QUEUE, calculation_queue
from tests.helpers import WEB, answers_healthz, free_port, title, wait_until

ROOT = Path(__file__).resolve().parent.parent
GONE_WITHIN = 15.0  # seconds: the web workers go with their master (PR_SET_PDEATHSIG) within a second or two
# The Makefile's venv stamp: the tests run make with their own interpreter and never (re)install the venv.
STAMP = ".venv/.installed-stamp"


def launcher_env(app_config: dict[str, object], port: int, run_file: Path) -> dict[str, str]:
    """The launcher's environment: the test's servers, and its run file where the test says."""
    return {**os.environ, **{key: str(value) for key, value in app_config.items()}, "PORT": str(port),
            "WEB_WORKERS": "1", "WEB_THREADS": "2", "PYTHONUNBUFFERED": "1", "RUN_ENV": str(run_file)}


def make(target: str, args: str, env: dict[str, str], path: str | None = None) -> subprocess.CompletedProcess[str]:
    """`make <target> ARGS=<args>` in the checkout, with this interpreter as the venv's; `path` replaces PATH."""
    command = [shutil.which("make") or "make", "--no-print-directory", "-o", STAMP, target, f"PY={sys.executable}",
               f"RUN_ENV={env['RUN_ENV']}", f"ARGS={args}"]
    env = {**env, "PATH": path} if path is not None else env
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # dead, not yet reaped by init
    except psutil.NoSuchProcess:
        return True


def test_killing_the_launcher_kills_its_server_worker_work_horse_and_scheduler(app, app_config, servers, tmp_path):
    env = launcher_env(app_config, free_port(), tmp_path / "run.env")
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
        assert any("app.serving" in command or "wsgi:front" in command for command in commands), commands
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


def test_under_the_launcher_slow_clients_hold_no_thread(app, app_config, tmp_path):
    """`make run` serves with the production server (issue 21, class 4): sockets that send their headers or
    body a byte at a time wait outside the app's two threads, and events and probes are still answered."""
    port = free_port()
    env = launcher_env(app_config, port, tmp_path / "run.env")
    log_path = tmp_path / "devserver.log"
    with log_path.open("w") as log:
        launcher = subprocess.Popen([sys.executable, "-m", "app.dev.server"], cwd=ROOT, env=env, stdout=log,
                                    stderr=subprocess.STDOUT, process_group=0)
    slow: list[socket.socket] = []
    try:
        wait_until(lambda: answers_healthz(port), timeout=60, interval=0.2, what="the launcher's server answers")
        for n in range(20):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            slow.append(sock)
            if n % 2:  # headers never finished
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            else:  # a body promised and never sent
                sock.sendall(b"POST /api/event HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 100000\r\n\r\n{")
        for n in range(3):
            sock_event = json.dumps({"user_id": 77, "action": "while_slow", "metadata": {"n": n}}).encode()
            with socket.create_connection(("127.0.0.1", port), timeout=5) as quick:
                quick.sendall(b"POST /api/event HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                              b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(sock_event), sock_event))
                assert quick.recv(64).startswith(b"HTTP/1.1 201"), "an event waited behind slow clients"
            for sock in slow[n::7]:  # the slow ones trickle on
                sock.sendall(b"x")
    finally:
        for sock in slow:
            sock.close()
        os.killpg(launcher.pid, signal.SIGTERM)
        try:
            launcher.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()


def test_beside_the_launcher_make_cli_and_make_psql_reach_its_servers_through_its_run_file(app, app_config, servers,
                                                                                          tmp_path):
    port, run_file = free_port(), tmp_path / "run.env"
    env = launcher_env(app_config, port, run_file)
    log_path = tmp_path / "devserver.log"
    with log_path.open("w") as log:
        launcher = subprocess.Popen([sys.executable, "-m", "app.dev.server"], cwd=ROOT, env=env, stdout=log,
                                    stderr=subprocess.STDOUT, process_group=0)
    try:
        wait_until(lambda: "devserver: serving" in log_path.read_text(), timeout=60, what="the launcher started")
        assert stat.S_IMODE(run_file.stat().st_mode) == 0o600
        written = dict(word.split("=", 1) for word in shlex.split(run_file.read_text(), comments=True))
        assert written == {"DATABASE_URL": app_config["DATABASE_URL"], "REDIS_URL": servers.redis_url,
                           "PORT": str(port)}

        # A second terminal: the same settings, but no server addresses of its own.
        beside = {key: value for key, value in env.items() if key not in written}
        cli = make("cli", "calculate-metrics", beside)
        assert cli.returncode == 0, cli.stdout + cli.stderr
        summary = json.loads(cli.stdout.splitlines()[-1])
        query = f"-tA -c 'select trigger from calculation_runs where id = {summary['run_id']}'"
        found = make("psql", query, beside)
        assert (found.returncode, found.stdout.strip()) == (0, "cli"), found.stdout + found.stderr
        # With no psql on PATH (not even a shell's), the embedded PostgreSQL's psql answers.
        no_psql = make("psql", query, beside, path=str(tmp_path / "empty-bin"))
        assert (no_psql.returncode, no_psql.stdout.strip()) == (0, "cli"), no_psql.stdout + no_psql.stderr

        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=60) == 0
        assert not run_file.exists()
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
        print(log_path.read_text())


def test_embedded_valkey_listens_on_its_last_port_again_unless_that_port_is_taken(tmp_path):
    data_dir = tmp_path / "valkey"
    server = start_redis(data_dir)
    try:
        first = port_of(server.url)
        server.stop()
        server = start_redis(data_dir)
        assert port_of(server.url) == first
        server.stop()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind(("127.0.0.1", first))
            squatter.listen()
            server = start_redis(data_dir)
            moved = port_of(server.url)
            assert moved != first
            with redis.Redis.from_url(server.url) as client:
                assert client.ping()
        server.stop()
        server = start_redis(data_dir)
        assert port_of(server.url) == moved
    finally:
        server.stop()


NOT_A_DATABASE = "postgresql://nobody@127.0.0.1:1/none"


@pytest.mark.parametrize(("command", "settings", "message"), [
    ([sys.executable, "-m", "flask", "--app", "wsgi", "calculate-metrics"], {},
     "refusing to start: DATABASE_URL is not set"),
    ([sys.executable, "worker.py"], {"DATABASE_URL": NOT_A_DATABASE, "METRICS_WINDOW_HOURS": "5"},
     "refusing to start: METRICS_WINDOW_HOURS=5 must divide 24"),
], ids=["flask", "worker"])
def test_an_entry_point_refuses_a_setting_in_one_line_without_a_traceback(command, settings, message):
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env.update(settings, FLASK_SKIP_DOTENV="1")  # a developer's .env must not set DATABASE_URL here
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    lines = (done.stdout + done.stderr).splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), lines


def test_the_web_server_refuses_a_setting_once_and_stops_instead_of_starting_workers():
    env = {**os.environ, "DATABASE_URL": NOT_A_DATABASE, "METRICS_WINDOW_HOURS": "5", "WEB_WORKERS": "1",
           "PORT": str(free_port())}
    done = subprocess.run(WEB, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert output.count("refusing to start: METRICS_WINDOW_HOURS=5 must divide 24") == 1, output
    assert "Traceback" not in output
