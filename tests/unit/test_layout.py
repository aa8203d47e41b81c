"""The shape of the house, checked on the real tree: the three services meet only in
``shared/``; no import cycle in ``services/`` and ``shared/``, no module there over 500
lines that does not say why in its first lines; in ``services/api``, domains as packages
whose route modules never import each other and a response model on every route that
answers JSON."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.responses import JSONResponse

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "services.api"
SERVICES = ("services.ingest", "services.aggregator", "services.api")
MAX_LINES = 500
# A longer module says why in the first lines of its docstring ("over 500 lines", "longer
# than 500 lines").
LONG_MODULE_MARK = "500 lines"
LONG_MODULE_HEAD = 20


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {
    _module_name(p): p
    for folder in ("services", "shared")
    for p in sorted((ROOT / folder).rglob("*.py"))
}
API_MODULES = {m for m in MODULES if m == PACKAGE or m.startswith(PACKAGE + ".")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _nodes(body: Iterable[ast.stmt]) -> Iterator[ast.AST]:
    """Every node, except what only the type checker reads."""
    for node in body:
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from _nodes(node.orelse)
            continue
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                yield from _nodes([child])
            else:
                yield from ast.walk(child)


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def imports_of(module: str) -> set[str]:
    """The modules of services/ and shared/ that ``module`` imports (``from a import b``
    counts ``a.b`` when that is a module, else ``a``)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in _nodes(tree.body):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node)
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                for alias in node.names
            ]
        else:
            continue
        found.update(n for n in names if n in MODULES and n != module)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def _creates_router(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            func = node.value.func
            if isinstance(func, ast.Name) and func.id == "APIRouter":
                return True
    return False


ROUTE_MODULES = {m for m in API_MODULES if _creates_router(MODULES[m])}


def test_the_walk_sees_the_tree() -> None:
    # Guards the checks below against passing on an empty or misread tree.
    assert {"services.api.app", "services.api.deps", "services.api.metrics.routes"} <= set(MODULES)
    assert {"services.api.targets.routes", "services.api.board.page"} <= ROUTE_MODULES
    assert "services.api.deps" in GRAPH["services.api.metrics.routes"]
    assert "services.api.metrics.schemas" in GRAPH["services.api.metrics.routes"]


def test_no_route_module_imports_another() -> None:
    crossing = {
        module: sorted(GRAPH[module] & ROUTE_MODULES)
        for module in sorted(ROUTE_MODULES)
        if GRAPH[module] & ROUTE_MODULES
    }
    assert crossing == {}, "request dependencies belong in services/api/deps.py"


def test_request_dependencies_live_in_deps() -> None:
    # A route's settings come from deps.py alone: no module keeps its own reader of them.
    readers = sorted(
        module
        for module, path in MODULES.items()
        if module in API_MODULES
        and module not in ("services.api.app", "services.api.deps")
        and any(
            word in path.read_text(encoding="utf-8")
            for word in ("app.state.settings", "def get_settings")
        )
    )
    assert readers == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), or a self-loop."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle() -> None:
    assert _cycles(GRAPH) == []


def _service_of(module: str) -> str | None:
    return next((s for s in SERVICES if module == s or module.startswith(s + ".")), None)


def test_the_services_meet_only_in_shared() -> None:
    assert GRAPH["services.aggregator.consumer"] and GRAPH["services.ingest.app"]
    crossing = sorted(
        f"{module} -> {target}"
        for module in MODULES
        if (own := _service_of(module)) is not None
        for target in GRAPH[module]
        if _service_of(target) not in (None, own)
    )
    assert crossing == []


def test_long_modules_say_why_in_their_first_lines() -> None:
    unexplained = []
    for module, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") <= MAX_LINES:
            continue
        docstring = ast.get_docstring(ast.parse(text)) or ""
        head = "\n".join(docstring.splitlines()[:LONG_MODULE_HEAD])
        if LONG_MODULE_MARK not in head:
            unexplained.append(f"{module}: {text.count(chr(10))} lines")
    assert unexplained == []


def _api_routes(routes: Iterable[Any]) -> Iterator[APIRoute]:
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _api_routes(included.routes)
        elif isinstance(route, APIRoute):
            yield route


def _is_model(annotation: Any) -> bool:
    if get_origin(annotation) is list:
        return all(_is_model(arg) for arg in get_args(annotation))
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _answers_json(route: APIRoute) -> bool:
    # A 204 has no body; a page, a redirect or an event stream is not JSON.
    response_class = getattr(route.response_class, "value", route.response_class)
    return (
        route.status_code != 204
        and route.include_in_schema
        and isinstance(response_class, type)
        and issubclass(response_class, JSONResponse)
    )


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    from services.api.app import create_app
    from services.api.settings import ApiSettings

    # Nothing is connected to: an engine connects on first use, and no request is sent.
    url = f"sqlite:///{tmp_path_factory.mktemp('layout') / 'none.db'}"
    return create_app(ApiSettings(database_url=url, auth_mode="off"))


def _name(route: APIRoute) -> str:
    return f"{' '.join(sorted(route.methods or ()))} {route.path}"


def test_every_json_route_has_a_response_model(app: FastAPI) -> None:
    routes = [r for r in _api_routes(app.routes) if r.endpoint.__module__.startswith(PACKAGE)]
    assert len(routes) > 40
    without = sorted(
        f"{_name(r)} ({r.endpoint.__module__})"
        for r in routes
        if _answers_json(r) and not _is_model(r.response_model)
    )
    assert without == []
    # What the rule leaves out is only the page, its redirect, the stream and the 204s.
    exempt = sorted(_name(r) for r in routes if not _answers_json(r))
    assert exempt == [
        "DELETE /v1/working-calendars/{name}",
        "GET /board",
        "GET /board/",
        "GET /v1/stream",
    ]


def test_every_route_module_of_the_app_is_a_domain_package(app: FastAPI) -> None:
    modules = {r.endpoint.__module__ for r in _api_routes(app.routes)}
    served = {m for m in modules if m.startswith(PACKAGE)}
    assert served == ROUTE_MODULES
    # Each domain is a folder: no route module at the top of services/api.
    assert all(m.count(".") == 3 for m in served), served
