"""The first-use installer must ask for exactly what the engine declares."""

import re
import sys
from pathlib import Path

import pytest
from ASFDALib import dependencies

REPO = Path(__file__).resolve().parents[2]


def pyprojectDependencies():
    tomllib = pytest.importorskip("tomllib")
    with open(REPO / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["dependencies"]


def test_requirements_match_engine_pyproject():
    declared = pyprojectDependencies()
    torch = [d for d in declared if re.match(r"torch\b", d)]
    others = sorted(d.replace(" ", "") for d in declared if d not in torch)
    assert others == sorted(dependencies.WORKER_REQUIREMENTS)
    assert torch == ["torch" + dependencies.TORCH_REQUIREMENT]


def test_missing_requirements_checks_import_names():
    reqs = {"numpy>=1": "numpy", "no-such-package>=1": "no_such_package_asfda"}
    assert dependencies.missingRequirements(reqs) == ["no-such-package>=1"]


def test_bundled_engine_found_in_source_checkout():
    moduleDir = str(REPO / "ASFDAModule")
    assert dependencies.bundledWorkerRoot(moduleDir) == str(REPO)
    assert dependencies.workerPythonPath(moduleDir) == [str(REPO / "ASFDAExtension")]


def test_bundled_engine_found_in_installed_layout(tmp_path):
    moduleDir = tmp_path / "qt-scripted-modules"
    engine = moduleDir / "ASFDAWorker" / "ASFDAExtension" / "asfda"
    engine.mkdir(parents=True)
    (engine / "__main__.py").write_text("")
    assert dependencies.bundledWorkerRoot(str(moduleDir)) == str(moduleDir / "ASFDAWorker")
    assert dependencies.bundledWorkerRoot(str(tmp_path / "elsewhere" / "mod")) is None


def test_module_never_imports_torch_or_engine():
    sources = list((REPO / "ASFDAModule").rglob("*.py"))
    assert sources
    for path in sources:
        text = path.read_text()
        assert not re.search(r"^\s*(import|from)\s+(torch|asfda|monai)\b", text, re.M), path


def test_importing_lib_does_not_load_torch():
    import subprocess

    moduleDir = str(REPO / "ASFDAModule")
    code = (f"import sys; sys.path.insert(0, {moduleDir!r}); "
            "import ASFDALib.client, ASFDALib.worklist, ASFDALib.poller, ASFDALib.launcher, "
            "ASFDALib.dependencies; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
