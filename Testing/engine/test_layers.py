"""The engine's architecture is checked, not described: the import-linter layers contract and no module-level
import cycle anywhere in the package (docs/architecture.md)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "ASFDAExtension" / "asfda"
LAYERS = [
    "asfda.cli",
    "asfda.bench",
    "asfda.demo | asfda.worker",
    "asfda.loop",
    "asfda.adapt",
    "asfda.scoring",
    "asfda.query | asfda.data",
    "asfda.models",
    "asfda.io | asfda.synth",
    "asfda.core",
]


def lint_imports(config: Path) -> subprocess.CompletedProcess:
    linter = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        [str(linter), "--config", str(config), "--no-cache"],
        cwd=ROOT / "ASFDAExtension",
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_layers_contract_is_declared_and_kept():
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    assert [c["layers"] for c in contracts if c["type"] == "layers"] == [LAYERS]
    result = lint_imports(ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_the_contract_sees_real_imports(tmp_path):
    # The same layers upside down must break: the linter reads the package, it does not pass by default.
    config = tmp_path / "reversed.toml"
    reversed_layers = ",\n".join(f'    "{layer}"' for layer in reversed(LAYERS))
    config.write_text(
        f'[tool.importlinter]\nroot_package = "asfda"\n\n[[tool.importlinter.contracts]]\nname = "reversed"\n'
        f'type = "layers"\nlayers = [\n{reversed_layers}\n]\n'
    )
    result = lint_imports(config)
    assert result.returncode != 0 and "BROKEN" in result.stdout


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_level_imports(path: Path, root: Path) -> set:
    """Package modules imported at module level (not inside functions; TYPE_CHECKING blocks do not count)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()

    def visit(statements):
        for node in statements:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, (ast.If, ast.Try, ast.With)):
                for block in ("body", "orelse", "finalbody", "handlers"):
                    for child in getattr(node, block, []) or []:
                        visit(getattr(child, "body", [child]) if isinstance(child, ast.ExceptHandler) else [child])
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.split(".")[0] == root.name)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                if base.split(".")[0] == root.name:
                    found.add(base)
                    found.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import module`

    visit(ast.parse(path.read_text()).body)
    return found


def import_cycles(root: Path) -> list:
    """Strongly connected components of more than one module in the module-level import graph (Tarjan)."""
    modules = {module_name(p, root): p for p in root.rglob("*.py")}
    graph = {m: {d for d in module_level_imports(p, root) if d in modules and d != m} for m, p in modules.items()}
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))

    def connect(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return cycles


def test_no_module_level_import_cycle_in_the_package():
    assert import_cycles(PACKAGE) == []


@pytest.mark.parametrize("second", ["from pkg.a import x\n", "import pkg.a\n", "from . import a\n"])
def test_the_cycle_check_finds_a_cycle(tmp_path, second):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import y\nx = 1\n")
    (package / "b.py").write_text(second + "y = 2\n")
    (package / "c.py").write_text("def late():\n    from pkg.a import x\n    return x\n")  # function-level: no edge
    assert import_cycles(package) == [["pkg.a", "pkg.b"]]


def test_faces_reach_adapt_and_scoring_only_through_their_public_faces(tmp_path):
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (faces,) = [c for c in contracts if c["type"] == "forbidden"]
    assert set(faces["source_modules"]) == {"asfda.cli", "asfda.worker", "asfda.demo", "asfda.bench"}
    assert set(faces["forbidden_modules"]) == {"asfda.adapt.*", "asfda.scoring.*"}
    # The same rule over the loop (which is allowed to use the internals, and does) must break: it is live.
    config = tmp_path / "loop-as-face.toml"
    config.write_text(
        '[tool.importlinter]\nroot_package = "asfda"\n\n[[tool.importlinter.contracts]]\nname = "loop as a face"\n'
        'type = "forbidden"\nsource_modules = ["asfda.loop"]\nforbidden_modules = ["asfda.adapt.*"]\n'
        'allow_indirect_imports = "True"\n'
    )
    result = lint_imports(config)
    assert result.returncode != 0 and "asfda.loop" in result.stdout
