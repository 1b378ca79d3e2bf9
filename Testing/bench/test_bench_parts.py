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
