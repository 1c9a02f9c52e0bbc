"""Shared helpers of the benchmarks: machine description, matmul peak, timing, FLOP counting, subprocesses.

Every benchmark module exposes `run(quick: bool = False, **options) -> dict` (figures, JSON-ready) and
`table(result) -> list[list[str]]` (rows for the summary that `run_all.py` prints); each is also a
script (`python benchmarks/bench_X.py [--quick] [--json OUT]`).
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def cores() -> int:
    """CPU cores this process may run on (affinity), not the host's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return sorted(f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16") if f in have)
    except OSError:
        pass
    return []


def native_bf16() -> bool:
    """Whether the CPU computes bf16 in hardware (AVX512-BF16 or AMX); elsewhere torch emulates it, several
    times slower than fp32."""
    return bool({"avx512_bf16", "amx_bf16"} & set(cpu_flags()))


def other_load() -> dict:
    """Load average and the busiest other processes (from /proc; CPU share since they started is not
    known without sampling, so this reports processes that are running now and their nice level)."""
    load1, load5, _ = os.getloadavg()
    busy = []
    me = os.getpid()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == me:
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        state, nice = fields[0], int(fields[16])
        if state == "R" and cmd:
            busy.append({"pid": int(d.name), "nice": nice, "cmd": cmd[:100]})
    return {"loadavg_1min": round(load1, 2), "loadavg_5min": round(load5, 2), "running": busy}


def machine() -> dict:
    n = cores()
    load = other_load()
    return {
        "cpu": cpu_model(),
        "cores": n,
        "cpu_flags": cpu_flags(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "torch_threads_default": torch.get_num_threads(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_at_start": load,
        "background_load": load["loadavg_1min"] > 0.5 * n,
    }


def machine_line(m: dict) -> str:
    gpu = m["gpu"] or "no GPU"
    s = f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {gpu}, torch {m['torch']}"
    if m.get("background_load"):
        s += f"; background load (1-min load average {m['load_at_start']['loadavg_1min']})"
    return s


# -------------------------------------------------------------------------------------------- peaks
#: square matmul sizes whose best rate counts as the peak: a single size can sit below what the BLAS
#: reaches at another (cache blocking, thread split), and then a convolution "beats" the peak
PEAK_SIZES = (256, 512, 1024, 2048)


def matmul_peak(
    threads: int,
    dtype: torch.dtype = torch.float32,
    sizes: tuple[int, ...] = PEAK_SIZES,
    seconds: float = 1.0,
    n: int | None = None,
) -> float:
    """Best sustained FLOP/s of n x n x n matmuls in `dtype` with `threads` threads, over several sizes
    (`n` alone measures one size); each size is timed in 3 rounds of repeated calls, `seconds` in all."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    sizes = (n,) if n else tuple(sizes)
    try:
        best_rate = 0.0
        for size in sizes:
            a = torch.randn(size, size).to(dtype)
            b = torch.randn(size, size).to(dtype)
            a @ b
            t0 = time.perf_counter()
            a @ b
            one = max(time.perf_counter() - t0, 1e-6)
            reps = max(1, min(200, int(seconds / len(sizes) / 3 / one)))
            best = math.inf
            for _ in range(3):
                t = time.perf_counter()
                for _ in range(reps):
                    a @ b
                best = min(best, time.perf_counter() - t)
            best_rate = max(best_rate, 2 * size**3 * reps / best)
        return best_rate
    finally:
        torch.set_num_threads(old)


class Peaks:
    """Matmul rates (over `PEAK_SIZES`) measured many times during a run, fp32 and (where `bf16`) bf16,
    with `threads` and with 1 thread; the best of each counts as the peak. On a shared machine one
    measurement can land in a bad moment, so benchmarks call `measure()` between their parts, interleaved
    with what they time, and read `best()` at the end. A timed variant that still exceeds the peak is
    flagged (`above_peak`) rather than reported as more than 100% of it."""

    def __init__(self, threads: int, seconds: float = 0.6, bf16: bool | None = None):
        self.threads, self.seconds = threads, seconds
        self.bf16 = native_bf16() if bf16 is None else bf16
        self.samples: dict[str, list[float]] = {}

    @staticmethod
    def key(dtype: str, threads: int) -> str:
        return f"{dtype}_{threads}t"

    def measure(self, threads: int | None = None) -> None:
        """One measurement of every rate (or only those with `threads` threads)."""
        dtypes = (("fp32", torch.float32),) + ((("bf16", torch.bfloat16),) if self.bf16 else ())
        for dtype, td in dtypes:
            for t in [threads] if threads else sorted({self.threads, 1}):
                self.samples.setdefault(self.key(dtype, t), []).append(
                    matmul_peak(t, td, seconds=self.seconds)
                )

    def best(self, dtype: str = "fp32", threads: int | None = None) -> float:
        vals = self.samples.get(self.key(dtype, threads or self.threads), [])
        return max(vals) if vals else math.nan

    def to_dict(self) -> dict:
        return {
            k: {"best_gflop_s": max(v) / 1e9, "samples_gflop_s": [round(x / 1e9, 1) for x in v]}
            for k, v in self.samples.items()
        }


def fraction_of_peak(achieved: float, peak: float) -> dict:
    """{"fraction": achieved / peak, "above_peak": True where the peak was beaten}: a measured rate above
    the matmul peak means the peak was underestimated (a bad moment on a shared machine), not >100%."""
    frac = achieved / peak if peak == peak and peak > 0 else math.nan
    return {"fraction": frac, "above_peak": bool(frac > 1)}


def fmt_fraction(frac: float | None, above: bool = False) -> str:
    """'49.3%', or '>peak (100.6%)' for a rate that beat the measured peak."""
    if frac is None or frac != frac:
        return "-"
    return f">peak ({frac * 100:.1f}%)" if above else f"{frac * 100:.1f}%"


# ------------------------------------------------------------------------------------------- timing
def time_calls(
    fn: Callable[[], object], reps: int, warmup: int = 1, budget_s: float | None = None
) -> list[float]:
    """Wall times of `reps` calls (after `warmup`), stopping early once `budget_s` is spent (>= 2 calls)."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if budget_s is not None and len(times) >= 2 and time.perf_counter() - start > budget_s:
            break
    return times


def percentile(xs: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100])."""
    if not xs:
        return math.nan
    s = sorted(xs)
    if len(s) == 1:
        return s[0]
    k = (len(s) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summary(times: list[float]) -> dict:
    return {
        "n": len(times),
        "p50_ms": percentile(times, 50) * 1e3,
        "p95_ms": percentile(times, 95) * 1e3,
        "mean_ms": statistics.fmean(times) * 1e3 if times else math.nan,
    }


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call as torch.utils.flop_counter counts them (matmuls and convolutions, fwd + bwd)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        fn()
    return int(fc.get_total_flops())


# ---------------------------------------------------------------------------------------- subprocess
def run_json_subprocess(args: list[str], timeout: float, env: dict | None = None) -> dict:
    """Run `python ARGS...` whose last stdout line is a JSON object; {'error': ...} on failure/timeout."""
    full_env = {**os.environ, **(env or {})}
    src = str(ROOT / "src")
    full_env["PYTHONPATH"] = src + (os.pathsep + full_env["PYTHONPATH"] if full_env.get("PYTHONPATH") else "")
    try:
        proc = subprocess.run(
            [sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=full_env, cwd=ROOT
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {proc.returncode}: " + " | ".join(tail)[-400:]}
    return json.loads(lines[-1])


def run_script(args: list[str], timeout: float, env: dict | None = None) -> str | None:
    """Run `python ARGS...` (output not parsed); None on success, else a one-line reason."""
    full_env = {**os.environ, **(env or {})}
    try:
        proc = subprocess.run(
            [sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=full_env, cwd=ROOT
        )
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout:.0f} s"
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return f"exit {proc.returncode}: " + " | ".join(tail)[-400:]
    return None


def write_json(path: str | Path, obj) -> Path:
    """Write JSON atomically (temp file + os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")
    os.replace(tmp, path)
    return path


def _json_default(o):
    if isinstance(o, float | int):
        return o
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, torch.Tensor):
        return o.tolist()
    return str(o)


def fmt(v, spec: str = ".1f", none: str = "-") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return none
    if isinstance(v, str):
        return v
    return format(v, spec)


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [
        max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    print(f"\n## {title}")
    print("| " + " | ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def add_common_args(ap) -> None:
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, few repetitions")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = number of cores)")
