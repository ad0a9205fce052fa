"""The import arrows of specs/00-overview.md section 0.4: the core never reaches up, the client library has no click.

Each module's imports are read with :mod:`ast` (including imports inside functions), so a lazy import cannot
hide an arrow the layout forbids.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

#: folder -> top-level modules it must never import (spec 0.4).
FORBIDDEN = {
    "ledger": {"credentials", "node", "tools", "aiohttp", "click", "urllib.request", "http", "socket"},
    "credentials": {"node", "tools", "aiohttp", "click", "urllib.request", "http", "socket"},
    "node": {"tools", "click"},
    "tools/client": {"click", "tools.cli", "tools.devnet", "tools.bench"},
}


def imported_modules(path: Path) -> set[str]:
    """Every module name ``path`` imports, as written (``a.b`` for ``from a.b import c``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _hits(module: str, forbidden: set[str]) -> list[str]:
    return [f for f in forbidden if module == f or module.startswith(f + ".")]


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_no_forbidden_imports(folder: str) -> None:
    files = sorted((REPO / folder).rglob("*.py"))
    assert files, f"no modules under {folder}"
    bad = [f"{p.relative_to(REPO)} imports {m}" for p in files for m in sorted(imported_modules(p))
           if _hits(m, FORBIDDEN[folder])]
    assert not bad, "\n".join(bad)


def command_modules() -> set[str]:
    """The modules of tools/cli that define a click command or group (the others are libraries)."""
    return {f"tools.cli.{p.stem}" for p in (REPO / "tools" / "cli").glob("*.py")
            if p.stem not in ("main", "__main__") and any(
                isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr in ("command", "group")
                for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
                if isinstance(node, ast.FunctionDef) for d in node.decorator_list)}


def test_cli_commands_do_not_borrow_from_each_other() -> None:
    # A helper one command uses from another belongs in a library module (tools/client, or a tools/cli
    # module with no commands); only tools/cli/main.py gathers the command modules.
    commands = command_modules()
    assert {"tools.cli.verify", "tools.cli.genesis", "tools.cli.audit"} <= commands
    assert "tools.cli.util" not in commands and "tools.cli.roots" not in commands
    bad = [f"{p.name} imports {m}" for p in sorted((REPO / "tools" / "cli").glob("*.py")) if p.stem != "main"
           for m in sorted(imported_modules(p)) if m in commands and m != f"tools.cli.{p.stem}"]
    assert not bad, "\n".join(bad)


def test_the_checker_sees_imports_inside_functions(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text("import json\n\ndef f():\n    from tools.cli import util\n    import click.testing\n")
    assert imported_modules(src) == {"json", "tools.cli", "click.testing"}
    assert _hits("click.testing", {"click"}) == ["click"] and not _hits("clicky", {"click"})
