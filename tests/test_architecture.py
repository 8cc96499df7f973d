"""Imports flow one way: api <- tenants <- devices <- audiences <- messaging <- campaigns, config on top.

A lower room never reaches a higher one, not through an import (at module level or inside a
function), nor through a dotted path in a string (import_string targets, settings, lazy model
references). The FCM sandbox is a development tool: nothing in the product reaches it. The
README's "Architecture" section draws the same picture.
"""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Lower first. A room may reach its own modules and those of lower rooms.
ROOMS = ["api", "tenants", "devices", "audiences", "messaging", "campaigns", "webhooks", "config"]
# Rooms outside the product: nothing in ROOMS may reach them.
TOOLS = ["fcm_sandbox"]
# Top-level directories that are not Django code at all.
NOT_CODE = {"tests", "bench", "docs", "templates", "var", "staticfiles"}

DOTTED = re.compile(r"^([a-z_]+)(\.[A-Za-z_][A-Za-z0-9_]*)+$")


def references(source: str) -> list[tuple[int, str]]:
    """(line, top-level package) of every import and every dotted-path string in `source`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if match := DOTTED.match(node.value):
                found.append((node.lineno, match.group(1)))
    return sorted(found)


def violations(room: str, source: str) -> list[str]:
    """What `source`, a module of `room`, reaches against the direction."""
    level = ROOMS.index(room)
    bad = []
    for line, target in references(source):
        if target in TOOLS:
            bad.append(f"line {line}: {room} reaches {target}, a development tool")
        elif target in ROOMS and ROOMS.index(target) > level:
            bad.append(f"line {line}: {room} reaches {target}, a higher room")
    return bad


def product_modules():
    for room in ROOMS:
        for path in sorted((ROOT / room).rglob("*.py")) if (ROOT / room).is_dir() else []:
            if "migrations" not in path.parts:
                yield room, path


def test_every_app_has_a_room():
    apps = {p.parent.name for p in ROOT.glob("*/apps.py")} | {p.parent.name for p in ROOT.glob("*/models.py")}
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - NOT_CODE
    unplaced = sorted((apps | packages) - set(ROOMS) - set(TOOLS))
    assert not unplaced, f"Place {unplaced} in ROOMS or TOOLS here and in the README's Architecture diagram."


def test_no_product_module_imports_against_the_direction():
    bad = [
        f"{path.relative_to(ROOT)} {problem}"
        for room, path in product_modules()
        for problem in violations(room, path.read_text())
    ]
    assert not bad, "\n".join(bad)


def test_the_check_sees_imports_hidden_in_functions_and_strings():
    source = (
        "from devices.models import Device\n"
        "def later():\n"
        "    from messaging import services\n"
        "HANDLER = 'messaging.fcm.check_credentials'\n"
        "import fcm_sandbox.accounts\n"
    )

    assert violations("tenants", source) == [
        "line 1: tenants reaches devices, a higher room",
        "line 3: tenants reaches messaging, a higher room",
        "line 4: tenants reaches messaging, a higher room",
        "line 5: tenants reaches fcm_sandbox, a development tool",
    ]
    assert violations("config", source) == ["line 5: config reaches fcm_sandbox, a development tool"]


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, at module level or inside functions ("a.b" and "a.b.c")."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return modules


def test_services_never_import_the_tasks_that_call_them():
    # Enqueueing has one home: messaging.tasks, which listens to the services' signals.
    assert "messaging.services" in imported_modules(ROOT / "messaging/tasks.py")
    assert "messaging.tasks" not in imported_modules(ROOT / "messaging/services.py")
