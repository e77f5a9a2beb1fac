"""Daemon latency: what keeping the model resident buys, and what the socket round trip costs.

Run:  .venv/bin/python benchmarks/daemon_latency.py [--size 512] [--repeat 5]

It starts a real daemon (seeded random weights: the same architecture and cost as the real ones,
without the download) in private temp folders, and measures in the same run:

1. submit -> ACCEPTED, -> first PROGRESS (iteration 0: the job started), -> first finished
   iteration, with the model resident;
2. a cold ``neural-mirage render`` of the same one-iteration job (process start, imports, model
   build, the iteration), against the resident daemon's submit-to-result time;
3. the overhead of a 2048x2048 RGBA image beyond compute: client wall time from SUBMIT to RESULT
   received, minus the render time the daemon reports. The job reads only conv1_1 so that the
   compute is small and the transfer, conversion and result storage dominate. Measured on an idle
   daemon (median of five), and back to back, where the previous job's memory release adds to it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from neural_mirage.client.locate import daemon_command
from neural_mirage.client.protocol import image_meta
from neural_mirage.client.zmq_client import Client, DaemonError


def start_daemon(env: dict[str, str]) -> subprocess.Popen:
    process = subprocess.Popen(daemon_command("--weights", "random", "--log-file", os.devnull),
                               env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runtime = Path(env["NEURAL_MIRAGE_RUNTIME_DIR"])
    for _ in range(600):
        if (runtime / "daemon.json").exists():
            try:
                with Client(f"ipc://{runtime}/daemon.sock", timeout=1) as c:
                    c.hello()
                return process
            except DaemonError:
                pass
        time.sleep(0.1)
    raise RuntimeError("the daemon did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    runtime = Path(tempfile.mkdtemp(prefix="nm-bench-run-", dir="/tmp"))
    cache = Path(tempfile.mkdtemp(prefix="nm-bench-cache-", dir="/tmp"))
    env = {**os.environ, "NEURAL_MIRAGE_RUNTIME_DIR": str(runtime),
           "NEURAL_MIRAGE_CACHE_DIR": str(cache)}
    os.environ.update(env)
    size = args.size
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (size, size, 4), dtype=np.uint8)
    params = {"size": size, "iterations": 1, "scales": 1, "early_stop": 0.0}
    daemon = start_daemon(env)
    try:
        accepted, started, first, whole = [], [], [], []
        with Client(timeout=120) as client:
            client.hello()
            for _ in range(args.repeat):
                marks: dict[int, float] = {}
                t0 = time.perf_counter()
                job = client.submit(rgba.tobytes(), image_meta(size, size, 4, "u8", "RGBA"),
                                    params)["job"]
                accepted.append(time.perf_counter() - t0)
                client.wait(job, on_progress=lambda p, _, m=marks: m.setdefault(
                    p["iteration"], time.perf_counter()))
                whole.append(time.perf_counter() - t0)
                client.ack(job)
                started.append(marks[0] - t0)
                first.append(marks[1] - t0)

            big = rng.integers(0, 256, (2048, 2048, 4), dtype=np.uint8).tobytes()
            cheap = {"size": 2048, "iterations": 1, "scales": 1, "early_stop": 0.0,
                     "content_layers": {"relu1_1": 1.0}, "style_layers": {"relu1_1": 1.0}}
            # Measured on an idle daemon: the previous render's working set (1.3 GB here) is
            # released after its RESULT went out, about 70 ms per GB, and a SUBMIT arriving
            # meanwhile waits for it (page faults wait for the unmap). Back to back is shown too.
            overheads, back_to_back = [], []
            for pause in (1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0):
                time.sleep(pause)
                t0 = time.perf_counter()
                result = client.render(big, image_meta(2048, 2048, 4, "u8", "BGRA"), cheap)
                total = time.perf_counter() - t0
                client.ack(result.job)
                (overheads if pause else back_to_back).append(total - result.header["elapsed"])

        photo = cache / "bench.png"
        Image.fromarray(rgba[..., :3]).save(photo)
        cold = []
        for _ in range(max(1, args.repeat // 2)):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "neural_mirage.cli", "render", str(photo),
                            str(cache / "out.png"), "--weights", "random", "--size", str(size),
                            "--iterations", "1", "--scales", "1", "--early-stop", "0"],
                           check=True, capture_output=True, env=env)
            cold.append(time.perf_counter() - t0)
    finally:
        daemon.terminate()
        daemon.wait(30)

    ms = lambda xs: f"{1000 * statistics.median(xs):8.1f} ms"  # noqa: E731
    print(f"Daemon latency, {size}x{size} RGBA, one L-BFGS iteration, random weights, "
          f"{os.cpu_count()} CPU threads, median of {args.repeat}")
    print(f"  submit -> ACCEPTED                        {ms(accepted)}")
    print(f"  submit -> first PROGRESS (job started)    {ms(started)}   target < 50 ms")
    print(f"  submit -> first finished iteration        {ms(first)}")
    print(f"  submit -> RESULT, model resident          {ms(whole)}")
    print(f"  cold 'neural-mirage render', same job     {ms(cold)}")
    ratio = statistics.median(cold) / statistics.median(whole)
    print(f"  cold / resident                           {ratio:8.1f}x")
    print(f"  2048x2048 RGBA round trip beyond compute  {ms(overheads)}   target < 100 ms")
    print(f"    the same, jobs back to back             {ms(back_to_back)}   (includes the "
          "previous job's memory release)")


if __name__ == "__main__":
    main()
