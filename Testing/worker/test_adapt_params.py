"""POST /adapt's options reach the adaptation: the validation gate's threshold, checked at the request."""

from __future__ import annotations

import pytest
from asfda.data.datastore import Datastore
from asfda.worker import tasks
from asfda.worker.schemas import AdaptRequest
from pydantic import ValidationError


@pytest.mark.parametrize("params, expected", [({}, 11), ({"gate_decide_from_labels": 0}, 0)])
def test_the_gate_threshold_reaches_adapt_datastore(monkeypatch, tmp_path, params, expected):
    seen = {}

    class Result:
        version, parent, metrics, pseudo_cases, gate = "v0002", "v0001", {}, [], {"activate": True}

    def fake_adapt(store, options, device, progress=None, should_stop=None, activate=True):
        seen["options"], seen["activate"] = options, activate
        return Result()

    monkeypatch.setattr("asfda.loop.session.adapt_datastore", fake_adapt)
    request = AdaptRequest(**params).model_dump(exclude_none=True)
    tasks.run_adapt(Datastore(tmp_path / "ds"), request, "cpu", lambda *a: None)
    assert seen["options"].gate.decide_from_labels == expected
    assert seen["activate"] is False  # only the supervising worker flips ACTIVE


def test_a_negative_gate_threshold_is_refused():
    with pytest.raises(ValidationError):
        AdaptRequest(gate_decide_from_labels=-1)
