"""The package's shape: sub-packages by concern, imports only downward, no cycles, docstrings."""

from __future__ import annotations

import ast
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "proxy"
SUBPACKAGES = {"client", "commands", "config", "keys", "ops", "policy", "serve"}
TOP_MODULES = {"__init__", "__main__", "cli", "errors", "signing"}
# What the top-level modules may import (each sub-package says it in its docstring). The root
# package (``proxy``, which only holds ``__version__``) may be imported from anywhere.
TOP_RULES = {
    "proxy.errors": set[str](),
    "proxy.signing": set[str](),
    "proxy.cli": {f"proxy.{name}" for name in SUBPACKAGES} | {"proxy.errors", "proxy.signing"},
    "proxy.__main__": {"proxy.cli"},
}
MAY_IMPORT = re.compile(r"^May import:(.*?)(?:\n\n|\Z)", re.MULTILINE | re.DOTALL)


def modules(root: Path) -> dict[str, Path]:
    """Every module of the package under ``root``, by dotted name (a package by its own)."""
    found = {}
    for path in sorted((root / "proxy").rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def owner(name: str) -> str:
    """The unit a module belongs to: its sub-package, or itself at the top."""
    parts = name.split(".")
    return ".".join(parts[:2])


def imports(name: str, path: Path, known: set[str]) -> Iterator[tuple[int, str]]:
    """Every module of the package that ``name`` imports, anywhere in it: at the top, inside a
    function, or under TYPE_CHECKING (a cycle through type hints is still a cycle to read)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            # ``from . import x``: x may be a module; otherwise the names live in ``base``.
            targets = [f"{base}.{alias.name}" for alias in node.names]
            targets = [t if t in known else base for t in targets]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and (
                str(node.args[0].value).startswith(".")
                or str(node.args[0].value).split(".")[0] == "proxy"
            )
        ):
            # Hidden from the rules below: the package imports its own modules by statement.
            yield node.lineno, f"import_module({node.args[0].value!r})"
            continue
        else:
            continue
        for target in targets:
            if (target == "proxy" or target.startswith("proxy.")) and target != name:
                yield node.lineno, target


def rules(root: Path) -> dict[str, set[str]]:
    """What each unit may import: the top-level table, and each sub-package's docstring."""
    allowed = {unit: set(names) for unit, names in TOP_RULES.items()}
    for package in sorted(p.parent for p in (root / "proxy").glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text())) or ""
        match = MAY_IMPORT.search(doc)
        assert match, f"{package.name}/__init__.py: its docstring says what it may import"
        names = {n.strip().rstrip(".") for n in match.group(1).replace("\n", " ").split(",")}
        allowed[f"proxy.{package.name}"] = names - {"nothing", ""}
    return allowed


def violations(root: Path) -> list[str]:
    """Every import that goes up or sideways against the rules, and every import cycle."""
    found = modules(root)
    known = set(found)
    allowed = rules(root)
    problems = []
    graph: dict[str, set[str]] = {name: set() for name in found}
    for name, path in found.items():
        unit = owner(name)
        for line, target in imports(name, path, known):
            where = f"{path.relative_to(root)}:{line}"
            if target.startswith("import_module("):
                problems.append(f"{where} {target}: import it with an import statement")
                continue
            graph[name].add(target)
            if target == "proxy" or owner(target) == unit:
                continue
            if unit not in allowed:
                problems.append(f"{where}: {unit} is not a sub-package or a known top module")
            elif owner(target) not in allowed[unit]:
                problems.append(
                    f"{where} imports {target}: {unit} may import only "
                    f"{', '.join(sorted(allowed[unit])) or 'nothing of the package'}"
                )
    problems += [f"modules in an import cycle: {', '.join(cycle)}" for cycle in cycles(graph)]
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer_problems(allowed: dict[str, set[str]]) -> list[str]:
    """Whatever the docstrings say, these hold: the client and the policy stand on nothing but
    the errors; neither keys nor config reach into the request path; nothing imports cli; and
    no two units may import each other, however indirectly."""
    problems = [
        f"{unit} may import {', '.join(sorted(allowed[unit] - {'proxy.errors'}))}"
        for unit in ("proxy.client", "proxy.policy")
        if allowed[unit] - {"proxy.errors"}
    ]
    problems += [
        f"{unit} may import proxy.serve"
        for unit in ("proxy.keys", "proxy.config")
        if "proxy.serve" in allowed[unit]
    ]
    problems += [
        f"{unit} may import proxy.cli"
        for unit, names in allowed.items()
        if "proxy.cli" in names and unit != "proxy.__main__"
    ]
    units = {unit: names - {unit} for unit, names in allowed.items()}
    problems += [f"units that may import each other: {', '.join(c)}" for c in cycles(units)]
    return problems


# --- the package as it is ---------------------------------------------------------------------


def test_the_package_is_sub_packages_by_concern_and_a_few_top_modules() -> None:
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert packages == SUBPACKAGES
    assert {p.stem for p in PACKAGE.glob("*.py")} == TOP_MODULES
    # A folder of modules without __init__.py would be a namespace package: left out of the
    # wheel's package list and out of these rules.
    for folder in PACKAGE.rglob("*"):
        if folder.is_dir() and folder.name != "__pycache__":
            assert (folder / "__init__.py").exists(), folder


def test_imports_go_only_downward_and_form_no_cycle() -> None:
    assert violations(ROOT) == []


def test_the_rules_keep_the_layers_apart() -> None:
    assert layer_problems(rules(ROOT)) == []


@pytest.mark.parametrize("name", sorted(modules(ROOT)))
def test_every_module_says_what_it_is_in_one_line(name: str) -> None:
    path = modules(ROOT)[name]
    doc = ast.get_docstring(ast.parse(path.read_text()))
    assert doc, f"{path.relative_to(ROOT)} has no docstring"
    first = doc.splitlines()[0]
    assert first.endswith(".") and len(first) <= 96, first


# --- the rules can fail -----------------------------------------------------------------------


def copy_package(tmp_path: Path) -> Path:
    shutil.copytree(PACKAGE, tmp_path / "proxy", ignore=shutil.ignore_patterns("__pycache__"))
    assert violations(tmp_path) == []
    return tmp_path


def append(path: Path, line: str) -> None:
    path.write_text(path.read_text() + line + "\n")


@pytest.mark.parametrize(
    ("module", "line", "expected"),
    [
        # keys reaching up into the request path, also from inside a function
        (
            "keys/credentials.py",
            "def f():\n    from ..serve.state import ProxyState",
            "imports proxy.serve.state: proxy.keys may import only proxy.errors",
        ),
        # config importing the server under TYPE_CHECKING
        (
            "config/settings.py",
            "if TYPE_CHECKING:\n    from ..serve import server",
            "imports proxy.serve.server: proxy.config may import only",
        ),
        # the client importing anything of the proxy but errors
        ("client/pool.py", "from ..signing import sign", "imports proxy.signing"),
        ("client/wire.py", "import proxy.config.values", "imports proxy.config.values"),
        # the policy importing operations
        ("policy/rules.py", "from ..ops import logs", "imports proxy.ops.logs"),
        # anything importing cli
        ("serve/server.py", "from .. import cli", "imports proxy.cli"),
        ("commands/check.py", "from ..cli import main", "imports proxy.cli"),
        # an import the rules could not see
        ("serve/app.py", "importlib.import_module('..keys.reload', __package__)", "import_module"),
    ],
)
def test_a_forbidden_import_is_reported(
    tmp_path: Path, module: str, line: str, expected: str
) -> None:
    root = copy_package(tmp_path)
    append(root / "proxy" / module, line)
    problems = violations(root)
    assert problems and expected in problems[0], problems  # (a cycle may follow it)


def test_an_import_cycle_within_a_package_is_reported(tmp_path: Path) -> None:
    root = copy_package(tmp_path)
    # Allowed by the layers (both in config), but a cycle: settings -> file -> settings.
    append(root / "proxy/config/file.py", "if TYPE_CHECKING:\n    from .settings import Settings")
    assert violations(root) == [
        "modules in an import cycle: proxy.config.file, proxy.config.settings"
    ]


def test_a_docstring_that_widens_the_rules_is_caught(tmp_path: Path) -> None:
    root = copy_package(tmp_path)
    init = root / "proxy/keys/__init__.py"
    init.write_text(
        init.read_text().replace(
            "May import: proxy.errors.", "May import: proxy.errors, proxy.serve."
        )
    )
    assert layer_problems(rules(root)) == [
        "proxy.keys may import proxy.serve",
        "units that may import each other: proxy.config, proxy.keys, proxy.serve",
    ]
    client = root / "proxy/client/__init__.py"
    client.write_text(client.read_text().replace("proxy.errors.", "proxy.errors, proxy.ops."))
    assert "proxy.client may import proxy.ops" in layer_problems(rules(root))
