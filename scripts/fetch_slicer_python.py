#!/usr/bin/env python3
"""Fetch Slicer's own Python framework files per release into a local cache for the Slicer-side tests.

The per-release harness (Testing/slicer/harness/slicer_release.py) loads the module against each release's
real ``ScriptedLoadableModule``, ``i18n``, ``util``, ``parameterNodeWrapper`` (and 5.12's ``packaging``).
Those files are Slicer's, so they are fetched here into a cache, never committed:

    python scripts/fetch_slicer_python.py                       # from the public Slicer repository
    python scripts/fetch_slicer_python.py --repo /path/to/Slicer # from a local clone or bare mirror

The cache is ``$ASFDA_SLICER_PYTHON_CACHE`` or ``~/.cache/asfda/slicer-python``; each tag gets
``<cache>/<tag>/slicer/...`` and a ``SOURCE`` file naming the repository and commit. Only ``git`` is needed.
"""

import argparse
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PUBLIC_REPOSITORY = "https://github.com/Slicer/Slicer.git"
DEFAULT_TAGS = ("v5.8.1", "v5.10.0", "v5.12.3")
SOURCE_DIR = "Base/Python/slicer"
# What the harness loads; packaging.py exists from 5.12 on and is skipped where a tag lacks it.
WANTED = ("ScriptedLoadableModule.py", "i18n.py", "util.py", "packaging.py", "parameterNodeWrapper")


def cacheRoot():
    """Where the fetched files live (the tests read the same function's answer)."""
    override = os.environ.get("ASFDA_SLICER_PYTHON_CACHE")
    return Path(override).expanduser() if override else Path.home() / ".cache" / "asfda" / "slicer-python"


def _git(gitDir, *args, binary=False):
    result = subprocess.run(["git", "--git-dir", str(gitDir), *args], capture_output=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout if binary else result.stdout.decode().strip()


def _gitDirOf(repo):
    """A local repository's git directory: a bare mirror is its own, a clone has ``.git``."""
    path = Path(repo).expanduser()
    return path / ".git" if (path / ".git").exists() else path


def _fetchTags(url, tags, workDir):
    """A throwaway bare repository holding just ``tags`` (shallow) fetched from ``url``."""
    gitDir = workDir / "repo.git"
    subprocess.run(["git", "init", "--bare", "-q", str(gitDir)], check=True)
    refspecs = [f"refs/tags/{tag}:refs/tags/{tag}" for tag in tags]
    _git(gitDir, "fetch", "--depth", "1", "--no-tags", url, *refspecs)
    return gitDir


def extractTag(gitDir, tag, destination, source):
    """Write the wanted files of ``tag`` under ``destination/slicer``; returns the paths written."""
    commit = _git(gitDir, "rev-parse", f"{tag}^{{commit}}")
    present = set(_git(gitDir, "ls-tree", "--name-only", tag, SOURCE_DIR + "/").splitlines())
    paths = [f"{SOURCE_DIR}/{name}" for name in WANTED if f"{SOURCE_DIR}/{name}" in present]
    missing = [p for p in ("util.py", "ScriptedLoadableModule.py", "parameterNodeWrapper")
               if f"{SOURCE_DIR}/{p}" not in present]
    if missing:
        raise RuntimeError(f"{tag} has no {', '.join(missing)} under {SOURCE_DIR}")
    archive = _git(gitDir, "archive", "--format=tar", tag, *paths, binary=True)
    staging = destination.with_name(destination.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    written = []
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar.getmembers():
            if not member.isfile() or not member.name.endswith(".py"):
                continue
            relative = Path("slicer") / Path(member.name).relative_to(SOURCE_DIR)
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tar.extractfile(member).read())
            written.append(relative)
    (staging / "SOURCE").write_text(f"{source}\n{tag}\n{commit}\n")
    shutil.rmtree(destination, ignore_errors=True)
    staging.rename(destination)  # a half-written tag never looks complete to the tests
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", help="a local Slicer clone or bare mirror (default: fetch the public repository)")
    parser.add_argument("--url", default=PUBLIC_REPOSITORY, help="repository URL used when --repo is not given")
    parser.add_argument("--tags", nargs="+", default=list(DEFAULT_TAGS))
    parser.add_argument("--cache", type=Path, default=None, help="cache folder (default: %(default)s -> "
                        "$ASFDA_SLICER_PYTHON_CACHE or ~/.cache/asfda/slicer-python)")
    args = parser.parse_args(argv)
    root = (args.cache or cacheRoot()).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory() as work:
            if args.repo:
                gitDir, source = _gitDirOf(args.repo), str(Path(args.repo).expanduser().resolve())
            else:
                gitDir, source = _fetchTags(args.url, args.tags, Path(work)), args.url
            for tag in args.tags:
                written = extractTag(gitDir, tag, root / tag, source)
                print(f"{tag}: {len(written)} files -> {root / tag}")
    except (RuntimeError, subprocess.CalledProcessError, OSError) as error:
        print(f"fetch_slicer_python: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
