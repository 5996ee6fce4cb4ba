"""UI start-up: seconds from the command to the first answered API request, `toolkit ui` against
plain `mlflow ui` (four uvicorn workers and a job runner: what `toolkit ui` ran until issue 11).

Both serve the same small store in a temporary directory (one experiment, three runs). Each is
started three times; the median is printed. Target: `toolkit ui` answers within 10 s on an idle
2-core CPU. Run: `python benchmarks/ui_start.py` (part of `make bench`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from toolkit.config import RunConfig
from toolkit.store import writing

REPEATS = 3
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seconds_to_answer(argv: list[str], port: int, env: dict) -> float:
    """Start `argv`, poll the experiments API until it answers, stop the server's process group."""
    start = time.perf_counter()
    process = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/search",
        data=json.dumps({"max_results": 10}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        while time.perf_counter() - start < 120:
            try:
                urllib.request.urlopen(request, timeout=2).read()
                return time.perf_counter() - start
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{argv[0]} did not answer within 120 s")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait()


def main():
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = uri = f"sqlite:///{tmp}/mlflow.db"
        for seed in range(3):
            with writing.start_run("ui-start", f"vae-seed{seed}") as run:
                run.log_params(RunConfig(seed=seed).to_params())
                run.log_metrics({"val/loss": 250.0 - seed}, step=1)
        env = dict(os.environ)
        commands = {
            "mlflow ui (before)": lambda port: [
                str(BIN / "mlflow"),
                "ui",
                "--backend-store-uri",
                uri,
                "--port",
                str(port),
            ],
            "toolkit ui": lambda port: [str(BIN / "toolkit"), "ui", "--port", str(port)],
        }
        medians = {}
        for name, argv in commands.items():
            times = []
            for _ in range(REPEATS):
                port = free_port()
                times.append(seconds_to_answer(argv(port), port, env))
            medians[name] = statistics.median(times)
            print(f"{name:20s} median {medians[name]:5.1f} s  (runs: {', '.join(f'{t:.1f}' for t in times)})")
        print(
            f"toolkit ui starts {medians['mlflow ui (before)'] / medians['toolkit ui']:.1f}x as fast "
            f"(target: under 10 s: {'met' if medians['toolkit ui'] < 10 else 'NOT met'})"
        )


if __name__ == "__main__":
    main()
