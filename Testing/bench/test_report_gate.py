"""The report's validation-gate section counts right and wrong verdicts on the validation split."""

from __future__ import annotations

from asfda.bench.report_gate import advisory_dice, gate_section


def _row(strategy, seed, activated, val, test, kept_val=None, kept_test=None):
    row = {
        "strategy": strategy,
        "pseudo": True,
        "k": 2,
        "rounds": 1,
        "seed": seed,
        "val_dice": val,
        "test_dice": test,
        "gate": [{"activated": activated, "reason": "2-fold held-out Dice ..."}],
    }
    if kept_val is not None:
        row.update(inactive_version_val_dice=kept_val, inactive_version_test_dice=kept_test)
    return row


def test_rejections_of_better_versions_and_acceptances_of_worse_ones_are_counted():
    unadapted = {"val_dice": 0.70, "test_dice": 0.69}
    rows = [
        _row("asfda", 0, False, 0.70, 0.69, kept_val=0.80, kept_test=0.79),  # a wrong rejection
        _row("asfda", 1, True, 0.65, 0.66),  # a wrong acceptance
        _row("random", 0, True, 0.75, 0.74),
        _row("random", 1, False, 0.70, 0.69, kept_val=0.60, kept_test=0.61),  # a right rejection
    ]
    assert advisory_dice(rows[0], "test") == 0.79 and advisory_dice(rows[1], "test") == 0.66
    text = "\n".join(gate_section(rows, unadapted))
    assert "| asfda + PL | 2 | 2 | 1 | 1 | 1 | 0.675 / 0.725 | 0.675 / 0.725 |" in text
    assert "| random + PL | 2 | 2 | 1 | 0 | 0 | 0.725 / 0.675 | 0.715 / 0.675 |" in text
    assert "asfda + PL vs random + PL +0.050" in text  # advisory test Dice: (0.79 + 0.66) / 2 - (0.74 + 0.61) / 2


def test_no_gated_runs_no_section():
    assert gate_section([{**_row("asfda", 0, True, 0.7, 0.7), "gate": []}], {"val_dice": 0.7}) == []
