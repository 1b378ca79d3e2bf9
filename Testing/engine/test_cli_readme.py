"""The README's scripted loop, command by command, on a tiny setup (5 volumes of 24^3, a tiny UNet).

Running the block through bash takes about 2.5 minutes on 2 busy cores (each `asfda` start imports torch and
MONAI), so this test runs each of its `asfda` lines in-process with main(), in order, with the block's own
arguments, and runs its python3 one-liner on the ranking as written.
"""

import json
import re
import shlex
import shutil
import subprocess
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import numpy as np
from asfda.cli import main
from cli_test_data import AFFINE, imported_datastore, make_setup
from engine_helpers import write_nifti

README = Path(__file__).resolve().parents[2] / "README.md"


def scripted_loop() -> str:
    match = re.search(r"<!-- scripted-loop -->\n```bash\n(.*?)```", README.read_text(), re.S)
    assert match, "README has no scripted-loop block"
    return match.group(1)


def run_line(line: str, variables: dict) -> str:
    for name, value in variables.items():
        line = line.replace(name, value)
    words = shlex.split(line.split(" > ")[0])
    assert words[0] == "asfda", line
    out = StringIO()
    with redirect_stdout(out):
        assert main(words[1:]) == 0, line
    if " > " in line:
        Path(line.split(" > ")[1].strip()).write_text(out.getvalue())
    return out.getvalue()


def test_the_readme_scripted_loop_runs_command_by_command(tmp_path, monkeypatch):
    block = scripted_loop()
    setup = make_setup(tmp_path)
    shutil.copytree(setup.refs, tmp_path / "new-labels")  # the simulated annotator knows the truth
    monkeypatch.chdir(tmp_path)
    variables = {'"$DS"': "asfda-datastore", '"$STEPS"': "3", '"${USER:-me}"': "me"}
    lines = [line.strip() for line in block.splitlines()]
    assert "DS=${DS:-asfda-datastore}" in block and lines[0] == "set -euo pipefail"
    commands = [line for line in lines if line.startswith("asfda ")]
    assert [" ".join(c.split()[1:3]) for c in commands] == [
        "model import",
        "case add",
        "rank --datastore",
        "label submit",
        "adapt --datastore",
        "evaluate --datastore",
        "model export",
    ]
    (picker,) = [line for line in lines if line.startswith("picks=$(")]
    submit = commands[3]
    for command in commands:
        if command == submit:
            one_liner = picker[len("picks=$(") : picker.rindex(")")]
            picks = subprocess.run(["bash", "-c", one_liner], capture_output=True, text=True, check=True).stdout.split()
            assert len(picks) == 4
            printed = [run_line(command, {**variables, '"$case"': case, "$case": case}) for case in picks]
            assert all(p.startswith("stored label for") for p in printed)
        else:
            output = run_line(command, variables)
            if command.startswith("asfda adapt"):
                assert "new active model v0002 (parent v0001)" in output
    rows = (tmp_path / "evaluation.csv").read_text().splitlines()
    assert rows[0].startswith("model_version,case_id") and len(rows) == 6 and rows[1].startswith("v0002,case0")
    assert (tmp_path / "adapted-model" / "provenance.json").exists()


def sparse_scripted_loop() -> str:
    match = re.search(r"<!-- scripted-loop-sparse -->\n```bash\n(.*?)```", README.read_text(), re.S)
    assert match, "README has no scripted-loop-sparse block"
    return match.group(1)


def draw_requested_slices(ranking: Path, truth: dict, folder: Path) -> None:
    """The simulated annotator of sparse mode: the true label on the requested slices, and their mask."""
    folder.mkdir(exist_ok=True)
    for row in json.loads(ranking.read_text()):
        requested = row["requested_slices"]
        if not row["selected"]:
            assert requested is None
            continue
        mask = np.zeros_like(truth[row["case_id"]])
        index = [slice(None)] * 3
        index[requested["axis"]] = requested["indices"]
        mask[tuple(index)] = 1
        write_nifti(folder / f"{row['case_id']}.nii.gz", truth[row["case_id"]] * mask, AFFINE)
        write_nifti(folder / f"{row['case_id']}.mask.nii.gz", mask, AFFINE)


def test_the_readme_sparse_loop_runs_command_by_command(tmp_path, monkeypatch):
    block = sparse_scripted_loop()
    setup = make_setup(tmp_path)
    monkeypatch.chdir(tmp_path)
    imported_datastore(setup, "asfda-datastore")
    variables = {'"$DS"': "asfda-datastore", '"$STEPS"': "3", '"${USER:-me}"': "me"}
    lines = [line.strip() for line in block.splitlines()]
    commands = [line for line in lines if line.startswith("asfda ")]
    assert [" ".join(c.split()[1:2]) for c in commands] == ["rank", "rank", "label", "adapt", "evaluate"]
    (picker,) = [line for line in lines if line.startswith("picks=$(")]
    for command in commands:
        if command.startswith("asfda label submit"):
            draw_requested_slices(tmp_path / "sparse-ranking.json", setup.truth, tmp_path / "new-labels")
            one_liner = picker[len("picks=$(") : picker.rindex(")")]
            picks = subprocess.run(["bash", "-c", one_liner], capture_output=True, text=True, check=True).stdout.split()
            assert len(picks) == 5  # k 8 of a pool of 5: every volume, 4 slices each
            printed = [run_line(command, {**variables, '"$case"': case, "$case": case}) for case in picks]
            assert all("requested slices done: 4 of 4" in p for p in printed)
        else:
            output = run_line(command, variables)
            if command.startswith("asfda adapt"):
                assert "new active model v0002 (parent v0001)" in output and "sparse_labels=5" in output
    table = (tmp_path / "sparse-ranking.txt").read_text()
    assert table.count("axis 2: ") == 5  # the setup's spacing (1.5, 1.0, 2.0): thickest along axis 2
    assert len((tmp_path / "evaluation.csv").read_text().splitlines()) == 6
