"""scripts/fetch_slicer_python.py on a throwaway repository laid out like Slicer's (no network, no mirror)."""

import importlib.util
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fetch_slicer_python.py"


def loadScript():
    spec = importlib.util.spec_from_file_location("fetch_slicer_python", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def git(repo, *args):
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                   check=True, capture_output=True)


@pytest.fixture
def slicerLikeRepo(tmp_path):
    repo = tmp_path / "Slicer"
    source = repo / "Base" / "Python" / "slicer"
    (source / "parameterNodeWrapper").mkdir(parents=True)
    for name in ("util.py", "i18n.py", "ScriptedLoadableModule.py", "cli.py", "parameterNodeWrapper/__init__.py"):
        (source / name).write_text(f"# {name} at v9.0.0\n")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "one")
    git(repo, "tag", "v9.0.0")
    (source / "util.py").unlink()
    git(repo, "commit", "-qam", "util gone")
    git(repo, "tag", "v9.1.0")
    return repo


def test_copies_the_wanted_files_of_a_tag(slicerLikeRepo, tmp_path):
    script = loadScript()
    cache = tmp_path / "cache"
    assert script.main(["--repo", str(slicerLikeRepo), "--tags", "v9.0.0", "--cache", str(cache)]) == 0
    copied = sorted(str(p.relative_to(cache / "v9.0.0")) for p in (cache / "v9.0.0").rglob("*") if p.is_file())
    assert copied == ["SOURCE", "slicer/ScriptedLoadableModule.py", "slicer/i18n.py",
                      "slicer/parameterNodeWrapper/__init__.py", "slicer/util.py"]  # cli.py is not wanted
    assert (cache / "v9.0.0" / "slicer" / "util.py").read_text() == "# util.py at v9.0.0\n"
    assert (cache / "v9.0.0" / "SOURCE").read_text().splitlines()[1] == "v9.0.0"


def test_a_tag_without_the_files_stores_nothing_and_says_why(slicerLikeRepo, tmp_path, capsys):
    script = loadScript()
    cache = tmp_path / "cache"
    assert script.main(["--repo", str(slicerLikeRepo), "--tags", "v9.1.0", "--cache", str(cache)]) == 1
    error = capsys.readouterr().err.strip()
    assert error == "fetch_slicer_python: v9.1.0 has no util.py under Base/Python/slicer"
    assert not (cache / "v9.1.0").exists() and not list(cache.iterdir())


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    script = loadScript()
    monkeypatch.setenv("ASFDA_SLICER_PYTHON_CACHE", str(tmp_path / "elsewhere"))
    assert script.cacheRoot() == tmp_path / "elsewhere"
    monkeypatch.delenv("ASFDA_SLICER_PYTHON_CACHE")
    assert script.cacheRoot() == Path.home() / ".cache" / "asfda" / "slicer-python"


def test_release_tests_skip_with_the_command_when_the_cache_is_empty(monkeypatch, tmp_path):
    from harness import slicer_release

    monkeypatch.setenv("ASFDA_SLICER_PYTHON_CACHE", str(tmp_path / "empty"))
    assert slicer_release.releaseFolder("v5.8.1") is None
    reason = slicer_release.skipReason("v5.8.1")
    assert "scripts/fetch_slicer_python.py" in reason and "\n" not in reason


def test_without_repo_it_fetches_just_the_tags_from_the_url(slicerLikeRepo, tmp_path):
    """The default path (Slicer's public repository) goes through a shallow fetch; a file:// URL stands in."""
    script = loadScript()
    cache = tmp_path / "cache"
    url = slicerLikeRepo.as_uri()
    assert script.main(["--url", url, "--tags", "v9.0.0", "--cache", str(cache)]) == 0
    assert (cache / "v9.0.0" / "slicer" / "util.py").read_text() == "# util.py at v9.0.0\n"
    assert (cache / "v9.0.0" / "SOURCE").read_text().splitlines()[0] == url
