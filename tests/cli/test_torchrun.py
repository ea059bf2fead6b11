"""Under torchrun the non-main ranks train with rank 0 but print nothing and leave nothing behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SMALL = ("dataset.size=16", "victim.width=8", "victim.hidden=32", "device=cpu", "train.epochs=1")


@pytest.mark.slow  # two interpreters importing torch, a one-epoch DDP fit on gloo
@pytest.mark.skipif(
    shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None, reason="no torchrun"
)
def test_rank_one_prints_nothing_and_leaves_no_folder(tmp_path):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "torchrun"),
            "--nproc_per_node=2",
            "-m",
            "advlab",
            *SMALL,
            "attack=fgsm",
            "eval.num_examples=32",
            "logger=none",
            f"hydra.run.dir={run_dir}",
            f"cache_dir={tmp_path / 'cache'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TMPDIR": str(scratch), "OMP_NUM_THREADS": "1"},
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert out.count("run folder:") == 1  # one summary
    assert out.count("training smallcnn") == 1  # rank 1 logs nothing
    assert not list(scratch.glob("advlab-rank*"))  # rank 1's scratch folders are gone
    assert json.loads((run_dir / "results.json").read_text())["metrics"]["eval/num_examples"] == 32
