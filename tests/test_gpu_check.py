"""The prepared GPU check runs on the CPU too (small), so that it cannot rot between GPU runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_smoke_runs_every_part_on_the_cpu():
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--smoke",
                          "--device", "cpu"], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    for figure in ("L-BFGS vs torch.optim.LBFGS in float64", "device-to-host reads",
                   "baseline (torchvision VGG19", "engine, default (fp32)", "daemon: a short"):
        assert figure in run.stdout
    assert "FAILED" not in run.stdout
