"""CI size of `asfda bench pool` and `asfda bench e2e`: they run the product's rank and CLI end to end."""

from asfda.bench.cost.e2e import EndToEndSettings, format_e2e, run_e2e
from asfda.bench.cost.pool import PoolBenchSettings, format_pool, run_pool_bench


def test_pool_bench_measures_first_rank_and_a_cached_rerank(tmp_path):
    settings = PoolBenchSettings(sizes=(1, 2), shape=(20, 20, 16), roi=(16, 16, 16), sw_batch_size=1, loader_workers=0)
    report = run_pool_bench(settings, tmp_path)
    rows = report["rows"]
    assert [r["pool"] for r in rows] == [1, 2]
    for row in rows:
        assert row["first"]["scored"] == row["pool"] and row["first"]["cached"] == 0
        assert row["rerank"]["scored"] == 0 and row["rerank"]["cached"] == row["pool"]
        assert row["first"]["peak_rss_mb"] > 0
    assert "| 2 |" in format_pool(report)


def test_e2e_bench_times_the_cli_loop(tmp_path):
    settings = EndToEndSettings(volumes=3, shape=(32, 32, 32), roi=(32, 32, 32), steps=1)
    result = run_e2e(settings, tmp_path)
    assert result["adapt_s"] >= result["adapt_training_s"] > 0
    assert result["rank_s"] > 0 and result["rerank_s"] > 0
    assert "outside training" in format_e2e(result)
