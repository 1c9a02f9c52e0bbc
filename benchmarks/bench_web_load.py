"""Load test of `latentcomp serve`: 8 concurrent clients send 200 compose requests to a server on 127.0.0.1.

    .venv/bin/python benchmarks/bench_web_load.py --model toyfaces            # bundled model
    .venv/bin/python benchmarks/bench_web_load.py --model tiny                # random 32x32 models

The server runs in its own process (`latentcomp serve`, as a user starts it) so that the clients do not
share its interpreter. First the single-request latency is measured (sequential requests, one at a time),
then the clients run concurrently. Every request is a different collage (random rectangles of different
samples). Printed: errors (must be 0), p50 / p95 latency, requests/s, mean server batch size, next to
the single-request time of the same run. --json PATH writes the numbers too.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, threads: int, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "latentcomp.cli", "serve", "--model", model, "--port", str(port),
           "--threads", str(threads)]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited early:\n{proc.stdout.read()}")
        try:
            if httpx.get(url + "api/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise SystemExit("server did not start in time")


def png_b64(arr: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def make_bodies(url: str, n: int, seed: int = 0) -> list[dict]:
    """n different collages: 2-3 random rectangles from 6 generator samples, plus their masks."""
    samples = httpx.get(url + "api/samples", params={"seed": 100, "n": 6}, timeout=120).json()["samples"]
    srcs = [np.asarray(Image.open(io.BytesIO(base64.b64decode(s["image"]))).convert("RGB")) for s in samples]
    res = srcs[0].shape[0]
    rng = np.random.default_rng(seed)
    bodies = []
    for _ in range(n):
        collage = np.zeros_like(srcs[0])
        mask = np.zeros((res, res), np.uint8)
        for _ in range(int(rng.integers(2, 4))):
            src = srcs[int(rng.integers(len(srcs)))]
            x0, y0 = (int(v) for v in rng.integers(0, res * 3 // 4, 2))
            w, h = (int(v) for v in rng.integers(res // 4, res // 2 + 1, 2))
            collage[y0 : y0 + h, x0 : x0 + w] = src[y0 : y0 + h, x0 : x0 + w]
            mask[y0 : y0 + h, x0 : x0 + w] = 255
        bodies.append({"collage": png_b64(collage), "mask": png_b64(mask)})
    return bodies


async def run_load(url: str, bodies: list[dict], clients: int, total: int):
    latencies: list[float] = []
    batches: list[int] = []
    errors: list[str] = []
    counter = iter(range(total))

    async def client(c: httpx.AsyncClient):
        for i in counter:
            t0 = time.perf_counter()
            try:
                r = await c.post("api/compose", json=bodies[i % len(bodies)])
                dt = time.perf_counter() - t0
                if r.status_code == 200:
                    latencies.append(dt)
                    batches.append(r.json()["batch"])
                else:
                    errors.append(f"HTTP {r.status_code}: {r.text[:200]}")
            except httpx.HTTPError as e:
                errors.append(repr(e))

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as c:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(c) for _ in range(clients)))
        wall = time.perf_counter() - t0
    return latencies, batches, errors, wall


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="toyfaces", help="--model of latentcomp serve (toyfaces, tiny, ...)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--single", type=int, default=30, help="sequential requests for the single-request time")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads of the server")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    args = ap.parse_args()

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    proc = start_server(args.model, args.threads, port)
    try:
        wait_ready(url, proc)
        info = httpx.get(url + "api/model", timeout=10).json()
        bodies = make_bodies(url, 64)
        with httpx.Client(base_url=url, timeout=120) as c:
            for b in bodies[:5]:  # warm-up
                c.post("api/compose", json=b).raise_for_status()
            single, infer = [], []
            for i in range(args.single):
                t0 = time.perf_counter()
                r = c.post("api/compose", json=bodies[i % len(bodies)])
                single.append(time.perf_counter() - t0)
                r.raise_for_status()
                infer.append(r.json()["seconds"])
        lat, batches, errors, wall = asyncio.run(run_load(url, bodies, args.clients, args.requests))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()

    single_ms = statistics.median(single) * 1000
    out = {
        "model": info["name"],
        "generator": info["generator"],
        "resolution": info["resolution"],
        "server_torch_threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "single_request_ms_p50": round(single_ms, 2),
        "single_request_rps": round(1000 / single_ms, 1),
        "single_inference_ms_p50": round(statistics.median(infer) * 1000, 2),
        "clients": args.clients,
        "requests": args.requests,
        "errors": len(errors),
        "p50_ms": round(pct(lat, 50) * 1000, 2),
        "p95_ms": round(pct(lat, 95) * 1000, 2),
        "requests_per_s": round(len(lat) / wall, 1),
        "mean_batch": round(float(np.mean(batches)), 2) if batches else None,
        "wall_s": round(wall, 2),
    }
    print(f"model {out['model']} ({out['generator']}), server torch threads {args.threads}, "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    print(f"single request (sequential, median of {args.single}): {single_ms:.1f} ms "
          f"= {1000 / single_ms:.1f} req/s (inference {out['single_inference_ms_p50']:.1f} ms)")  # fmt: skip
    print(f"{args.clients} clients x {args.requests} compose requests: errors {len(errors)} "
          f"({'OK' if not errors else 'FAIL'})")  # fmt: skip
    print(f"  latency p50 {out['p50_ms']:.1f} ms, p95 {out['p95_ms']:.1f} ms; "
          f"{out['requests_per_s']:.1f} req/s; mean server batch {out['mean_batch']}")  # fmt: skip
    for e in errors[:5]:
        print("  error:", e)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
