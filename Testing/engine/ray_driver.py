"""A rank scoring on Ray in its own process, for the test that kills it: `python ray_driver.py ADDRESS ROOT PIDS`.

Writes its actors' process ids to PIDS once they started, then ranks slowly so it is still running when killed.
"""

import json
import os
import sys
import time

from asfda.data.datastore import Datastore
from asfda.loop.rank import rank_pool
from asfda.query.strategies import RankingOptions
from asfda.scoring.options import ScoringOptions
from asfda.scoring.ray_options import RayOptions
from asfda.scoring.ray_pool import RayPoolScorer


def main(address: str, root: str, pids_file: str) -> None:
    scorer = RayPoolScorer(RayOptions(address))

    def started(actors) -> None:
        with open(pids_file + ".tmp", "w") as out:
            json.dump([a["pid"] for a in scorer.report.actors], out)
        os.rename(pids_file + ".tmp", pids_file)

    def slow(phase, step, total) -> None:
        time.sleep(0.5)

    scorer.on_started = started
    scoring = ScoringOptions(loader_workers=0)
    rank_pool(Datastore(root), RankingOptions(k=2), progress=slow, pool_scorer=scorer, scoring=scoring)


if __name__ == "__main__":
    main(*sys.argv[1:4])
