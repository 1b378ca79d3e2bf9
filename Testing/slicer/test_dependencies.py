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
    assert others == sorted(r.replace(" ", "") for r in dependencies.WORKER_REQUIREMENTS)
    assert torch == ["torch" + dependencies.TORCH_REQUIREMENT]


def test_missing_requirements_checks_versions_and_markers():
    """Issue 20: an installed but too old package is missing; one whose marker rules this Python out is not."""
    reqs = {"numpy>=1": "numpy", "numpy>=999": "numpy", "no-such-package>=1": "no_such_package_asfda",
            "no-such-package>=2; python_version < '3.0'": "no_such_package_asfda"}
    assert dependencies.missingRequirements(reqs) == ["numpy>=999", "no-such-package>=1"]
    assert not dependencies.applies("highdicom>=0.23; python_version >= '3.10'", "3.9")
    assert dependencies.applies("highdicom>=0.23; python_version >= '3.10'", "3.12")


def test_constraints_hold_installed_packages_and_conflicts_are_named():
    """Issue 20: an install never upgrades what Slicer ships (pydicom 2.4.4 in 5.10)."""
    import numpy

    assert f"numpy=={numpy.__version__}" in dependencies.shippedConstraints()
    assert dependencies.conflictsWithShipped(["numpy>=999", "numpy>=1"]) == [
        f"numpy {numpy.__version__} is installed, the worker needs numpy>=999"]


# Slicer's Python per release, with the pins of packages it ships that the worker also needs. monai is left
# out of the resolution: it pulls torch (gigabytes of CUDA metadata), which the PyTorch extension installs.
SLICER_PYTHONS = {
    "5.8": ("3.9", []),
    "5.10": ("3.12", ["pydicom==2.4.4"]),
    "5.12": ("3.12", ["pydicom==3.0.2", "highdicom==0.27.0"]),
}


def pipDryRun(pythonVersion, requirements, constraints, tmp_path):
    import os
    import subprocess

    constraintsFile = tmp_path / "constraints.txt"
    constraintsFile.write_text("\n".join(constraints) + "\n")
    args = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--python-version", pythonVersion,
            "--only-binary=:all:", "--ignore-installed", "--report", "-", "-c", str(constraintsFile), *requirements]
    # The machine's own constraints are for this interpreter, not for the Slicer Python asked about.
    env = {**os.environ, "PIP_CONSTRAINT": "", "PIP_NO_INPUT": "1"}
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def packageIndex(tmp_path_factory):
    """Skip (saying why) only when pip cannot reach a package index at all."""
    probe = pipDryRun("3.12", ["tqdm>=4.60"], [], tmp_path_factory.mktemp("probe"))
    if probe.returncode != 0:
        pytest.skip("the resolver test needs a package index; pip could not resolve tqdm for Python 3.12: "
                    + probe.stderr.strip().splitlines()[-1][:300])


@pytest.mark.parametrize("release", sorted(SLICER_PYTHONS))
def test_worker_requirements_resolve_for_each_slicer_python(release, packageIndex, tmp_path):
    """Issue 20, finding 2: pip's resolver, asked for each Slicer's Python wheels, finds the worker a set.

    The required packages resolve with the packages the release ships held; the optional one (highdicom,
    PACS write-back) where it can; on 5.10 it cannot without upgrading pydicom, so it must be its own step.
    """
    import json

    pythonVersion, shipped = SLICER_PYTHONS[release]
    applicable = [r for r in dependencies.WORKER_REQUIREMENTS if dependencies.applies(r, pythonVersion)]
    names = [dependencies.parseRequirement(r).name for r in applicable]
    assert ("highdicom" in names) == (pythonVersion != "3.9")
    required = [r.split(";")[0] for r in applicable if dependencies.parseRequirement(r).name
                not in dependencies.OPTIONAL_REQUIREMENTS and not r.startswith("monai")]
    result = pipDryRun(pythonVersion, required + (["highdicom>=0.23"] if release == "5.12" else []), shipped,
                       tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    resolved = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in json.loads(result.stdout)["install"]}
    for pin in shipped:
        name, version = pin.split("==")
        assert resolved.get(name) == version
    if release == "5.10":
        alone = pipDryRun(pythonVersion, ["highdicom>=0.23"], shipped, tmp_path)
        assert alone.returncode != 0 and "ResolutionImpossible" in alone.stderr


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


def test_no_on_the_5_12_prompt_is_a_cancel_and_the_optional_step_never_blocks(monkeypatch, tmp_path):
    """Issue 20: 5.12's pip_ensure raises RuntimeError on "No"; a failed highdicom install leaves the rest."""
    import types

    slicer = pytest.importorskip("slicer")
    calls = []

    def pip_ensure(requirements, constraints=None, prompt_install=True, requester=None, skip_in_testing=True):
        calls.append((list(requirements), prompt_install, open(constraints).read()))
        if prompt_install:
            raise RuntimeError("User declined package installation")
        raise RuntimeError("pip failed: ResolutionImpossible")

    monkeypatch.setattr(slicer, "packaging", types.SimpleNamespace(pip_ensure=pip_ensure), raising=False)
    reqs = {"no-such-package-asfda>=1": "x", "highdicom>=999": "highdicom"}
    with pytest.raises(dependencies.DependencyError, match="cancelled"):
        dependencies.ensureWorkerRequirements(reqs, workFolder=str(tmp_path))
    assert calls[0][0] == ["no-such-package-asfda>=1"] and "numpy==" in calls[0][2]
    calls.clear()
    installed, unavailable = dependencies.ensureWorkerRequirements({"highdicom>=999": "highdicom"},
                                                                   workFolder=str(tmp_path))
    assert installed == [] and len(unavailable) == 1 and "PACS" in unavailable[0]
    assert [c[1] for c in calls] == [False]


def test_torch_is_installed_in_a_child_python_and_never_imported_into_slicer(monkeypatch):
    """Issue 20: PyTorchUtils' installTorch() imports torch into Slicer's process once installed."""
    import types

    calls = []
    installed = {"torch": None, "light-the-torch": None}

    def executePythonModule(module, args):
        calls.append(("run", module, list(args)))
        installed["torch"] = "2.13.0"

    util = types.SimpleNamespace(
        confirmOkCancelDisplay=lambda text, windowTitle=None: calls.append(("ask", text)) or True,
        pip_install=lambda req: calls.append(("pip", req)) or installed.update({"light-the-torch": "0.8"}),
        showStatusMessage=lambda text: None, _executePythonModule=executePythonModule)
    monkeypatch.setitem(sys.modules, "slicer", types.SimpleNamespace(util=util))
    monkeypatch.setitem(sys.modules, "PyTorchUtils", None)  # its installTorch must not be what runs
    monkeypatch.setattr(dependencies, "installedVersion", lambda name: installed.get(name))
    torchLoaded = "torch" in sys.modules
    assert dependencies.ensureTorch(askConfirmation=True) is True
    assert [c[0] for c in calls] == ["ask", "pip", "run"]
    assert calls[2][1:] == ("light_the_torch", ["install", "torch" + dependencies.TORCH_REQUIREMENT])
    assert ("torch" in sys.modules) == torchLoaded
    calls.clear()
    assert dependencies.ensureTorch() is True and calls == []  # installed: nothing asked


def test_declining_or_a_failed_torch_install_is_said(monkeypatch):
    import types

    util = types.SimpleNamespace(confirmOkCancelDisplay=lambda text, windowTitle=None: False,
                                 pip_install=lambda req: None, showStatusMessage=lambda text: None,
                                 _executePythonModule=lambda module, args: None)
    monkeypatch.setitem(sys.modules, "slicer", types.SimpleNamespace(util=util))
    monkeypatch.setattr(dependencies, "installedVersion", lambda name: "0.8" if name == "light-the-torch" else None)
    assert dependencies.ensureTorch(askConfirmation=True) is False
    util.confirmOkCancelDisplay = lambda text, windowTitle=None: True
    with pytest.raises(dependencies.DependencyError, match="PyTorch could not be installed"):
        dependencies.ensureTorch(askConfirmation=True)
