"""The label temp-file sweep belongs to the worker's start: a job child's label check must not delete the temp
file of a submit the worker is writing at that moment (found by Testing/worker/test_kill_invariants.py)."""

from __future__ import annotations

import numpy as np
from asfda.data.datastore import Datastore, LabelTag
from asfda.data.hand_placed import check_final_labels
from asfda.data.label_submit import LabelSubmission, submit_label
from asfda.data.leases import LeaseBook
from asfda.models.config import ModelConfig
from asfda.worker.jobstore import JobStore
from asfda.worker.recovery import recover
from cli_test_data import AFFINE, imported_datastore, make_setup
from engine_helpers import write_nifti


def test_a_label_check_leaves_a_live_submits_temp_file_alone(tmp_path):
    setup = make_setup(tmp_path / "setup", n_cases=2)
    store = Datastore(imported_datastore(setup, "live-submit"))
    version = store.models.active_version()
    config = ModelConfig.load(store.models.root / version / "config.json")
    label = write_nifti(tmp_path / "label.nii.gz", setup.truth["case0"].astype(np.uint8), AFFINE)
    submission = LabelSubmission("case0", label, "ada", "upload")
    submit_label(store, submission, config, version, LeaseBook(store.state.path, root=store.root))
    history = store.label_dir(LabelTag.FINAL) / "history" / "case0"
    in_flight = history / ".0123abcd.tmp.nii.gz"  # what the worker's next submit of case0 is writing right now
    in_flight.write_bytes(b"half of the next revision")

    check_final_labels(store, config)  # as a rank or adapt job child does before it reads labels
    assert in_flight.read_bytes() == b"half of the next revision"

    recover(store, JobStore(store.root / "asfda.db"))  # the worker's own start: no submit can be running
    assert not in_flight.exists()
