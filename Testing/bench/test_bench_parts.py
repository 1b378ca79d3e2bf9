"""Parts of the benchmarks that must be right on their own: archive reading, statistics, default picking."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
from asfda.bench.archives import extract_deb
from asfda.bench.plan import ABLATIONS, pick_default
from asfda.bench.spec import RunSpec
from asfda.bench.stats import holm, paired_test


def _ar(members) -> bytes:
    out = b"!<arch>\n"
    for name, data in members:
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode()
        out += header + data + (b"\n" if len(data) % 2 else b"")
    return out


def test_extract_deb_reads_the_data_member(tmp_path):
    payload = io.BytesIO()
    with tarfile.open(fileobj=payload, mode="w:xz") as tar:
        for path, text in (("./usr/share/x/ch2.nii.gz", b"volume"), ("./usr/share/doc/x/copyright", b"BSD")):
            info = tarfile.TarInfo(path)
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text))
    deb = tmp_path / "x_1_all.deb"
    deb.write_bytes(_ar([("debian-binary", b"2.0\n"), ("control.tar.xz", b"c"), ("data.tar.xz", payload.getvalue())]))
    found = extract_deb(deb, ["ch2.nii.gz", "copyright"], tmp_path / "out")
    assert found["ch2.nii.gz"].read_bytes() == b"volume"
    assert found["copyright"].read_bytes() == b"BSD"


def test_holm_matches_the_step_down_definition():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    adjusted = holm([0.2, float("nan")])
    assert adjusted[0] == pytest.approx(0.2) and np.isnan(adjusted[1])


def test_paired_test_pairs_by_seed():
    result = paired_test({0: 0.8, 1: 0.9, 2: 0.85}, {0: 0.7, 1: 0.8, 2: 0.80, 3: 0.1})
    assert result["n"] == 3
    assert result["gain"] == pytest.approx((0.1 + 0.1 + 0.05) / 3)
    assert result["p_t"] < 0.05


def _rows(variant, values):
    return [{"phase": "ablation", "variant": variant, "seed": s, "val_dice": v} for s, v in enumerate(values)]


def test_pick_default_switches_only_on_a_clear_validation_gain():
    rows = _rows("default", [0.80, 0.81, 0.82])
    rows += _rows("rule=density", [0.83, 0.84, 0.85])  # +0.03 on every seed: clear
    rows += _rows("alpha=0.25", [0.90, 0.70, 0.83])  # noisy: the mean gain is below its standard error
    chosen, log = pick_default(rows)
    assert chosen["ranking"] == {"rule": "density"}
    assert any(e.get("chosen") and e["variant"] == "rule=density" for e in log)
    assert all(name in {n for _, n, _, _ in ABLATIONS} for name in ("rule=density", "alpha=0.25"))


def test_run_keys_ignore_labels_and_options_that_do_not_apply():
    a = RunSpec("main", "x", "random", 2, False, 0)
    b = RunSpec("ablation", "y", "random", 2, False, 0)
    b.ranking["alpha"] = 0.9  # random does not read the ranking options
    assert a.key("f") == b.key("f")
    c = RunSpec("main", "x", "asfda", 2, False, 0)
    d = RunSpec("main", "x", "asfda", 2, False, 0)
    d.ranking["alpha"] = 0.9
    assert c.key("f") != d.key("f")


def test_headline_only_runs_exactly_the_headline_arms_with_the_code_default_recipe():
    from asfda.bench.labels import settings_from_args
    from asfda.bench.plan import code_pick, headline_specs
    from asfda.bench.settings import BenchSettings
    from asfda.cli import build_parser

    args = build_parser().parse_args(
        ["bench", "labels", "--headline-only", "--budgets", "1", "2", "--headline-seeds", "3"]
    )
    settings = settings_from_args(args, BenchSettings())
    assert settings.headline_only and not settings.ablations
    assert settings.fingerprint() == BenchSettings().fingerprint()  # which runs, not how they are made
    picked = code_pick()
    specs = headline_specs(settings, picked)
    arms = {(s.strategy, s.k, s.pseudo) for s in specs}
    assert arms == {
        ("asfda", 1, True),
        ("random", 1, True),
        ("random", 1, False),
        ("random", 2, False),
        ("asfda", 2, True),
        ("random", 2, True),
        ("random", 4, False),
        *((b, k, True) for b in ("foreground_random", "balanced_entropy") for k in (1, 2)),
    }
    assert {s.seed for s in specs} == {0, 1, 2}
    asfda = next(s for s in specs if s.strategy == "asfda")
    assert all(asfda.ranking[k] == v for k, v in picked["ranking"].items())
    assert all(asfda.guards[k] == v for k, v in picked["guards"].items())


def test_closing_is_in_millimetres_and_fills_a_sulcus():
    from asfda.synth.anatomy import close_mm

    mask = np.zeros((40, 40, 40), bool)
    mask[10:30, 10:30, 10:30] = True
    mask[10:30, 19:21, 20:30] = False  # a 2-voxel-wide "sulcus" open to the outside
    assert not close_mm(mask, (1.0, 1.0, 1.0), 0)[20, 20, 25]
    # the same 0.5 mm ball: the 2-voxel gap is 2 mm wide at 1 mm voxels (stays open), 0.5 mm at 0.25 mm (closed)
    assert not close_mm(mask, (1.0, 1.0, 1.0), 0.5)[20, 20, 25]
    assert close_mm(mask, (0.25, 0.25, 0.25), 0.5)[20, 20, 25]
    assert close_mm(mask, (1.0, 1.0, 1.0), 3.0)[20, 20, 25]
    assert (close_mm(mask, (1.0, 1.0, 1.0), 3.0) >= mask).all()  # closing only adds


def test_mni152_brain_mask_is_whole_brain_and_the_tissue_task_is_unchanged():
    from asfda.synth.anatomy import mni152

    grey_white = mni152(spacing=8.0, shape=(24, 28, 24), closing_mm=0)
    whole = mni152(spacing=8.0, shape=(24, 28, 24))
    assert whole.label.sum() > 1.03 * grey_white.label.sum()  # the sulcal CSF is now inside
    tissue = mni152(spacing=8.0, shape=(24, 28, 24), task="tissue")
    assert set(np.unique(tissue.label)) == {0, 1, 2}
