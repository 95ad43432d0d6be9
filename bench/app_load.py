"""Load test of the served app: N concurrent gradio_client users for D seconds against a local app on the default
model (started here as a subprocess, on loopback only, with OMP_NUM_THREADS = --threads so torch in the server
uses that many threads). Prints one JSON object: requests completed, rejected as busy, failed, lost (users still
running when their join times out, D + 600 s), p50/p95 latency of the completed ones and throughput. Goal: 0 failed, 0 lost.

Each user alternates the two cheapest model events (model facts; entropy under a random λ on a short text), so the
view queue group (two slots) and the model's lock are what is measured. No A/B timing: one configuration, one
run. Writes it, with the run's conditions (bench/conditions.py), to bench/results/app_load_cpu_2core.json (or --out).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repo root holds `bench`

from gradio_client import Client
from tqdm import tqdm

from bench import conditions

RESULT = Path(__file__).resolve().parent / "results" / "app_load_cpu_2core.json"
TEXT = "The quick brown fox jumps over the lazy dog. It was not amused, because the dog had been asleep."


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 300) -> Client:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"app exited early with code {proc.returncode}")
        try:
            return Client(url, verbose=False)
        except Exception:
            time.sleep(1)
    raise SystemExit("app did not start in time")


def _user(url: str, model: str, seconds: float, seed: int, out: list[tuple[str, float]]) -> None:
    rng = random.Random(seed)
    client = Client(url, verbose=False)
    end = time.time() + seconds
    i = 0
    while time.time() < end:
        t0 = time.perf_counter()
        try:
            if i % 2:
                client.predict(model, api_name="/model_info")
            else:
                lam = round(rng.random(), 2)
                client.predict(
                    model, TEXT, lam, "distance", "uniform", 3.0, "all heads", api_name="/locality_analyse"
                )
            out.append(("ok", time.perf_counter() - t0))
        except Exception as e:
            kind = "busy" if "queue is full" in str(e).lower() else "failed"
            out.append((kind, time.perf_counter() - t0))
        i += 1


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the server")
    ap.add_argument("--out", type=Path, default=RESULT)
    args = ap.parse_args(argv)
    cond = conditions.start(args.threads)
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", OMP_NUM_THREADS=str(args.threads))
    cmd = [sys.executable, "-m", "headscope.cli", "serve", "--model", args.model, "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_ready(url, proc)
        results: list[list[tuple[str, float]]] = [[] for _ in range(args.users)]
        threads = [
            threading.Thread(target=_user, args=(url, args.model, args.seconds, k, results[k]))
            for k in range(args.users)
        ]
        for t in threads:
            t.start()
        for _ in tqdm(range(int(args.seconds)), desc="load", file=sys.stderr):
            time.sleep(1)
        for t in threads:
            t.join(timeout=args.seconds + 600)
        lost = sum(t.is_alive() for t in threads)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    flat = [r for rs in results for r in rs]
    lat = sorted(d for kind, d in flat if kind == "ok")
    q = statistics.quantiles(lat, n=20) if len(lat) >= 2 else [float("nan")] * 19
    payload = {
        "bench": "app_load",
        "model": args.model,
        "server_threads": args.threads,
        "users": args.users,
        "seconds": args.seconds,
        "completed": len(lat),
        "rejected_busy": sum(k == "busy" for k, _ in flat),
        "failed": sum(k == "failed" for k, _ in flat),
        "lost": lost,
        "p50_latency_s": round(statistics.median(lat), 3) if lat else None,
        "p95_latency_s": round(q[18], 3) if lat else None,
        "throughput_rps": round(len(lat) / args.seconds, 2),
        "goal": "0 failed, 0 lost",
    }
    conditions.write(payload, args.out, cond)


if __name__ == "__main__":
    main()
