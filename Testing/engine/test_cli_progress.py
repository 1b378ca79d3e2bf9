"""Progress as log lines off a terminal, and --threads."""

import io
import os
import subprocess
import sys

import torch
from asfda.cli.common import apply_threads
from asfda.core.progress import log_progress


def test_log_progress_reports_start_every_interval_and_end():
    now = [0.0]
    stream = io.StringIO()
    update = log_progress("adapt", interval_s=10, stream=stream, clock=lambda: now[0])
    for step in range(1, 101):
        now[0] = step * 0.5  # 50 s in all
        update("train", step, 100, 0.25)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "asfda adapt: train 1/100 (1%), 0s elapsed, about 0s left, loss 0.2500"
    assert len(lines) == 6  # the first step, every 10 s (steps 21, 41, 61, 81), the last step
    assert lines[1].startswith("asfda adapt: train 21/100 (21%), 10s elapsed, about 38s left")
    assert lines[-1] == "asfda adapt: train 100/100 (100%), 50s elapsed, loss 0.2500"
    update(3, 4)  # the two-argument form
    assert stream.getvalue().splitlines()[-1].startswith("asfda adapt: 3/4 (75%)")


def test_a_command_writing_to_a_pipe_logs_plain_lines(tmp_path):
    code = (
        "from asfda.core.progress import console_progress\n"
        "update = console_progress('rank')\n"
        "for step in range(1, 4): update('score', step, 3)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "ASFDA_PROGRESS_SECONDS": "0"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "asfda rank: score 1/3 (33%), 0s elapsed, about 0s left",
        "asfda rank: score 2/3 (67%), 0s elapsed, about 0s left",
        "asfda rank: score 3/3 (100%), 0s elapsed",
    ]


def test_threads_limits_torch_in_this_process():
    before = torch.get_num_threads()
    try:
        apply_threads(1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_threads_sets_both_pools_in_a_fresh_process():
    code = (
        "from asfda.cli import main\n"
        "import torch\n"
        "from asfda.cli.common import apply_threads\n"
        "apply_threads(2)\n"
        "print(torch.get_num_threads(), torch.get_num_interop_threads())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["2", "2"]
