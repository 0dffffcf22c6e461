"""The floor plan of `app/`, kept by reading every module's imports and calls (no code is run).

core and services know nothing of Flask, werkzeug, Redis or the layers above
them; the runtime builds on them and knows nothing of Flask or the adapters;
the two blueprints never import each other; nothing on the request path
imports the development tooling; and only the runtime hooks forks or asks
for its pid.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app"

WEB_LIBRARIES = ("flask", "werkzeug", "jinja2")
UPPER_LAYERS = ("app.http", "app.api", "app.web", "app.ops", "app.jobs", "app.extensions", "app.dev")
FORBIDDEN = {
    "app.core": (*WEB_LIBRARIES, "redis", "rq", *UPPER_LAYERS, "app.runtime", "app.services"),
    "app.services": (*WEB_LIBRARIES, "redis", "rq", *UPPER_LAYERS, "app.runtime"),
    "app.runtime": (*WEB_LIBRARIES, "rq", *UPPER_LAYERS),
    "app.jobs": ("app.http", "app.api", "app.web", "app.ops", "app.dev"),
    "app.http": ("app.api", "app.web", "app.dev"),
    "app.ops": ("app.api", "app.web", "app.dev"),
    "app.api": ("app.web", "app.dev"),
    "app.web": ("app.api", "app.dev"),
    "app.serving": (*WEB_LIBRARIES, "rq", "redis", *UPPER_LAYERS, "app.services"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, relative imports resolved to absolute names."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found.add(prefix)
            found.update(f"{prefix}.{alias.name}" for alias in node.names)
    return found


def reaches(imported: str, target: str) -> bool:
    return imported == target or imported.startswith(target + ".") or imported.startswith(target + "_")


MODULES = {module_name(path): imports_of(path) for path in sorted(APP.rglob("*.py"))}


def test_the_walker_sees_relative_and_absolute_imports():
    assert "app.services.events.record_events" in MODULES["app.api.events"]
    assert "app.core.database.Database" in MODULES["app.services.events"]
    assert "flask" in MODULES["app.extensions"]


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_each_layer_imports_only_what_it_may(layer):
    breaches = [f"{module} imports {imported}" for module, imported_names in MODULES.items()
                if module == layer or module.startswith(layer + ".")
                for imported in sorted(imported_names)
                if any(reaches(imported, target) for target in FORBIDDEN[layer])]
    assert not breaches, "\n".join(breaches)


def test_nothing_served_imports_the_development_tooling():
    entry_points = {name: imports_of(ROOT / name) for name in ("wsgi.py", "worker.py")}
    served = {**{m: i for m, i in MODULES.items() if not reaches(m, "app.dev")}, **entry_points}
    breaches = [f"{module} imports {imported}" for module, names in served.items()
                for imported in names if reaches(imported, "app.dev")]
    assert not breaches, "\n".join(breaches)


def test_app_keeps_its_modules_in_packages():
    top_level = sorted(path.name for path in APP.glob("*.py"))
    assert len(top_level) <= 6, top_level
    for package in sorted(path.parent for path in APP.glob("*/__init__.py")):
        assert ast.get_docstring(ast.parse((package / "__init__.py").read_text())), f"{package.name} has no docstring"


# What a process does once per fork or asks of its own identity: the runtime's one rule (app/runtime/lifecycle.py).
PROCESS_CALLS = {"register_at_fork", "getpid"}


def process_calls(path: Path) -> set[str]:
    return {node.attr for node in ast.walk(ast.parse(path.read_text(), str(path)))
            if isinstance(node, ast.Attribute) and node.attr in PROCESS_CALLS}


def test_only_the_runtime_hooks_forks_or_checks_its_pid():
    """The dev launcher, which starts processes rather than serving, aside."""
    managers = ("app.runtime", "app.dev")
    found = {module: calls for module, path in ((module_name(path), path) for path in sorted(APP.rglob("*.py")))
             if (calls := process_calls(path)) and not any(reaches(module, manager) for manager in managers)}
    assert not found, found
    assert process_calls(APP / "runtime" / "lifecycle.py") == PROCESS_CALLS


def test_one_name_means_one_thing():
    """No class (or capitalised type alias) of `app/` is defined under the same name in two modules: a wire
    representation and a service result, say, never share a name."""
    defined: dict[str, list[str]] = {}
    for path in sorted(APP.rglob("*.py")):
        for node in ast.parse(path.read_text(), str(path)).body:
            if isinstance(node, ast.ClassDef):
                name = node.name
            elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                    and node.targets[0].id[:1].isupper() and not node.targets[0].id.isupper():
                name = node.targets[0].id
            else:
                continue
            defined.setdefault(name, []).append(module_name(path))
    assert not {name: modules for name, modules in defined.items() if len(modules) > 1}
