import sqlite3

from asfda.state import ScoreRecord, StateDB

_OLD_SCORES = """CREATE TABLE scores (case_id TEXT NOT NULL, strategy TEXT NOT NULL, model_version TEXT, dkd REAL,
asd REAL, score REAL, rank INTEGER, selected INTEGER NOT NULL DEFAULT 0, scored_at TEXT NOT NULL, run_id TEXT,
PRIMARY KEY (case_id, strategy))"""


def test_an_older_state_database_gains_the_knowledge_source_column_and_keeps_its_scores(tmp_path):
    path = tmp_path / "asfda.db"
    with sqlite3.connect(path) as db:
        db.execute(_OLD_SCORES)
        db.execute("INSERT INTO scores VALUES ('a', 'asfda', 'v0001', 0.5, 0.2, 0.4, 1, 1, '2026-01-01', 'r1')")
    state = StateDB(path)
    (old,) = state.scores("asfda")
    assert (old.case_id, old.dkd, old.knowledge_source) == ("a", 0.5, None)
    StateDB(path)  # opening again finds the column and leaves it alone
    record = ScoreRecord("b", "asfda", "v0002", 0.1, 0.3, 0.2, 1, True, "2026-01-02", "r2", "reference_stats")
    state.replace_scores("asfda", [record])
    assert state.scores("asfda") == [record]
