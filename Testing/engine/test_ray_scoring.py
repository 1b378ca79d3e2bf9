"""Scoring a pool on a local Ray (CPUs only): the single-process ranking, retries after an actor dies,
no actor outliving a killed coordinator, and one signal cache for both paths."""

import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path

import psutil
import pytest
import ray
from asfda.cli import main
from asfda.core.errors import AsfdaError
from asfda.core.sqlite_db import connect
from asfda.data.datastore import Datastore
from asfda.loop.rank import rank_pool
from asfda.query.strategies import RankingOptions
from asfda.scoring.options import ScoringOptions
from asfda.scoring.ray_options import DataAccess, RayOptions
from asfda.scoring.ray_pool import RayPoolScorer
from asfda.worker.processes import kill_tree
from engine_helpers import pool_datastore

CPUS = 2
GONE_WITHIN_S = 60.0


@pytest.fixture(scope="module")
def ray_address():
    # One local Ray for the module: starting it costs seconds. Two logical CPUs: two one-CPU actors.
    ray.init(num_cpus=CPUS, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def _rank(store: Datastore, pool_scorer=None, progress=None):
    scoring = ScoringOptions(loader_workers=0)
    return rank_pool(store, RankingOptions(k=2), scoring=scoring, pool_scorer=pool_scorer, progress=progress)


def _same_ranking(outcome, expected) -> None:
    assert [r.case_id for r in outcome.ranked] == [r.case_id for r in expected.ranked]
    for got, want in zip(outcome.ranked, expected.ranked):
        assert got.score == pytest.approx(want.score, rel=1e-5, abs=1e-7)
        assert got.dkd == pytest.approx(want.dkd, rel=1e-5) and got.asd == pytest.approx(want.asd, rel=1e-5)
        assert got.selected == want.selected


def test_ray_ranks_like_one_process_and_both_share_the_cache(tmp_path, ray_address):
    store = pool_datastore(tmp_path / "ray", cases=6)
    (store.images_dir / "broken.nii.gz").write_bytes(b"not a volume")
    single_store = Datastore(shutil.copytree(store.root, tmp_path / "single"))
    single = _rank(single_store)

    steps = []
    # One actor on both CPUs: it reads the next case in a second thread while scoring (the GPU actors' mode).
    scorer = RayPoolScorer(RayOptions(ray_address, cpus_per_actor=CPUS))
    outcome = _rank(store, scorer, progress=lambda phase, step, total: steps.append(step))
    _same_ranking(outcome, single)
    assert (outcome.scored, outcome.cached) == (6, 0)
    assert "cannot read volume" in outcome.errors["broken"]  # a bad case: its one line, the rest ranked
    assert len(scorer.report.actors) == 1 and scorer.report.retries == 0
    assert {a["device"] for a in scorer.report.actors} == {"cpu"}
    assert steps[0] == 0 and steps[-1] == 7 and steps == sorted(steps)  # counted as results came back

    (store.images_dir / "broken.nii.gz").unlink()  # else it is tried again, as on the single-process path
    again = _rank(store, scorer)  # everything cached: no actor is even started
    assert (again.scored, again.cached) == (0, 6) and scorer.report.actors == []
    _same_ranking(again, single)
    assert _rank(store).scored == 0  # the single-process path reads what Ray scored
    # And the other way round, through `asfda rank --ray`: all cached, so no actor starts and the order stands.
    (single_store.images_dir / "broken.nii.gz").unlink()
    out, err = StringIO(), StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        assert main(["rank", "--datastore", str(single_store.root), "--k", "2", "--json", "--ray", ray_address]) == 0
    assert [row["case_id"] for row in json.loads(out.getvalue())] == [r.case_id for r in single.ranked]
    assert "ray: 0 actors" in err.getvalue() and "0 scored" in err.getvalue()


def test_a_killed_actors_cases_are_retried_on_another(tmp_path, ray_address):
    # Images and the model go through the object store here, as for nodes without the datastore mounted.
    store = pool_datastore(tmp_path / "ray", cases=10)
    single = _rank(Datastore(shutil.copytree(store.root, tmp_path / "single")))
    scorer = RayPoolScorer(RayOptions(ray_address, data=DataAccess.OBJECT_STORE))
    actors = []
    scorer.on_started = actors.extend

    def kill_one_after_the_first_result(phase, step, total):
        if step == 1:
            ray.kill(actors[0], no_restart=True)

    outcome = _rank(store, scorer, progress=kill_one_after_the_first_result)
    assert scorer.report.actor_deaths == 1 and scorer.report.retries >= 1
    assert (outcome.scored, outcome.errors) == (10, {})
    _same_ranking(outcome, single)


def test_nodes_that_cannot_read_the_datastore_stop_the_rank_with_one_line(tmp_path, ray_address):
    store = pool_datastore(tmp_path / "ray", cases=1)
    scorer = RayPoolScorer(RayOptions(ray_address, actors=1, root_on_nodes=str(tmp_path / "not-mounted")))
    with pytest.raises(AsfdaError, match="no Ray scoring actor could start") as error:
        _rank(store, scorer)
    assert "is not readable at" in str(error.value) and "object-store" in str(error.value)
    assert "\n" not in str(error.value)


def test_a_killed_coordinator_takes_its_actors_with_it(tmp_path, ray_address):
    """A cancelled worker job is killed with its process tree: its Ray actors must end too."""
    store = pool_datastore(tmp_path / "ray", cases=12)
    pids_file = tmp_path / "actor_pids.json"
    command = [sys.executable, str(Path(__file__).with_name("ray_driver.py")), ray_address, str(store.root)]
    driver = subprocess.Popen([*command, str(pids_file)], env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 180
        while not pids_file.exists():
            assert driver.poll() is None, "the coordinator ended before its actors started"
            assert time.monotonic() < deadline, "the coordinator's actors did not start"
            time.sleep(0.2)
        actor_pids = json.loads(pids_file.read_text())
        assert len(actor_pids) == CPUS and all(psutil.pid_exists(p) for p in actor_pids)
        while _cached_rows(store) == 0:  # kill it mid-rank: some results in, the rest still out on the actors
            assert driver.poll() is None and time.monotonic() < deadline, "no result reached the cache"
            time.sleep(0.1)
    finally:
        kill_tree(driver.pid)  # what the worker does on cancel
    deadline = time.monotonic() + GONE_WITHIN_S
    while time.monotonic() < deadline:
        alive = [p for p in actor_pids if _running(p)]
        if not alive and ray.available_resources().get("CPU", 0) == CPUS:
            break
        time.sleep(0.5)
    assert not [p for p in actor_pids if _running(p)], "an actor outlived its coordinator"
    assert ray.available_resources().get("CPU", 0) == CPUS  # the actors' CPUs are free again
    # What came back before the kill stays in the cache: a new rank only scores the rest.
    cached = _cached_rows(store)
    resumed = _rank(store)
    assert (resumed.scored, resumed.cached) == (12 - cached, cached) and 1 <= cached < 12


def _cached_rows(store: Datastore) -> int:
    with connect(store.root / "asfda.db") as db:
        has_table = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'signals'").fetchone()
        return db.execute("SELECT COUNT(*) FROM signals").fetchone()[0] if has_table else 0


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_bench_ray_prints_its_figures(tmp_path, ray_address):
    from asfda.bench.cost.ray import RaySpeedSettings, format_ray_speed, run_ray_speed

    settings = RaySpeedSettings(volumes=3, shape=(24, 24, 24), roi=(16, 16, 16), actor_counts=(2,), cache_writes=10)
    settings.overhead_pairs = 1
    report = run_ray_speed(settings, tmp_path)
    assert [(r["actors"], r["data"]) for r in report.ray] == [(2, "shared"), (2, "object-store")]
    assert all(r["scoring_s"] > 0 and r["retries"] == 0 for r in report.ray) and len(report.overhead_ratios) == 1
    assert report.cache_writes_per_s > 0 and (tmp_path / "ray_speed.json").exists()
    text = format_ray_speed(report)
    assert "Ray, 2 actor(s), object-store" in text and "commits/s" in text


def test_a_worker_started_with_ray_scores_its_ranks_there(monkeypatch, tmp_path):
    from asfda.data.datastore import Datastore
    from asfda.loop import LoopSession, SessionSettings
    from asfda.scoring.ray_options import ADDRESS_ENV

    def ray_pool_scorer():  # what a worker job builds: the session from the job's params and environment
        return LoopSession(Datastore(tmp_path / "ds"), SessionSettings.from_params({}, "cpu")).pool_scorer()

    monkeypatch.delenv(ADDRESS_ENV, raising=False)
    assert ray_pool_scorer() is None
    monkeypatch.setenv(ADDRESS_ENV, "ray://head:10001")
    monkeypatch.setenv("ASFDA_RAY_DATA", "object-store")
    scorer = ray_pool_scorer()
    assert (scorer.options.address, scorer.options.data) == ("ray://head:10001", DataAccess.OBJECT_STORE)


def test_options_from_the_environment():
    env = {"ASFDA_RAY_DATA": "object-store", "ASFDA_RAY_ACTORS": "8", "ASFDA_RAY_ROOT": "/mnt/ds"}
    env.update({"ASFDA_RAY_CPUS_PER_ACTOR": "4", "ASFDA_RAY_IN_FLIGHT": "3", "ASFDA_RAY_MAX_RETRIES": "1"})
    options = RayOptions.from_env("auto", env)
    assert (options.data, options.actors, options.root_on_nodes) == (DataAccess.OBJECT_STORE, 8, "/mnt/ds")
    assert (options.cpus_per_actor, options.in_flight_per_actor, options.max_retries) == (4.0, 3, 1)
    assert RayOptions.from_env("local", {}).data == DataAccess.SHARED
    with pytest.raises(AsfdaError, match="ASFDA_RAY_DATA"):
        RayOptions.from_env("auto", {"ASFDA_RAY_DATA": "nfs"})
    with pytest.raises(AsfdaError, match="ASFDA_RAY_ACTORS"):
        RayOptions.from_env("auto", {"ASFDA_RAY_ACTORS": "two"})
    with pytest.raises(AsfdaError, match="ASFDA_RAY_IN_FLIGHT"):
        RayOptions.from_env("auto", {"ASFDA_RAY_IN_FLIGHT": "0"})
    with pytest.raises(AsfdaError, match="address"):
        RayOptions.from_env(" ", {})
