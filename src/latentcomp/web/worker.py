"""One inference thread with a bounded queue: requests never run the model on the event loop, never run
it concurrently (one model, one thread: no contention for the CPU or the GPU), and jobs that can share a
forward pass are batched.

A job is `(kind, payload, batch_key)`. The thread takes the first waiting job, then everything else already
waiting (up to `max_batch` per group), groups jobs with the same non-None `batch_key` and runs each group
with one call of `handlers[kind](payloads) -> results`. A group that fails as a whole is retried job by
job, so one bad request never fails its neighbours. A full queue answers `Busy` at once (HTTP 503)
instead of letting latency grow without bound.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("latentcomp.web")

Handler = Callable[[list[Any]], list[Any]]


class Busy(Exception):
    """The queue is full."""


@dataclass
class _Job:
    kind: str
    payload: Any
    key: Hashable | None
    future: Future = field(default_factory=Future)
    queued_at: float = field(default_factory=time.perf_counter)


@dataclass
class WorkerStats:
    jobs: int = 0
    batches: int = 0
    largest_batch: int = 0
    busy_seconds: float = 0.0


class InferenceWorker:
    def __init__(self, handlers: dict[str, Handler], max_batch: int = 16, max_queue: int = 64,
                 name: str = "latentcomp-inference"):  # fmt: skip
        self.handlers = handlers
        self.max_batch = max(1, int(max_batch))
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=max(1, int(max_queue)))
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.name = name
        self.stats = WorkerStats()

    # ------------------------------------------------------------------ API
    def submit(self, kind: str, payload: Any, batch_key: Hashable | None = None) -> Future:
        """Queue a job; the returned future holds `(result, batch_size)` or the handler's exception."""
        if kind not in self.handlers:
            raise KeyError(kind)
        self._ensure_started()
        job = _Job(kind, payload, None if batch_key is None else (kind, batch_key))
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise Busy() from None
        return job.future

    def queued(self) -> int:
        return self._queue.qsize()

    def close(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._closed = True
            t = self._thread
        if t is not None and t.is_alive():
            try:
                self._queue.put(None, timeout=timeout)
            except queue.Full:
                pass
            t.join(timeout)

    # ------------------------------------------------------------------ thread
    def _ensure_started(self) -> None:
        with self._lock:
            if self._closed:
                raise Busy()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = [first]
            stop = False
            while len(jobs) < 4 * self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                jobs.append(nxt)
            for group in self._groups(jobs):
                self._run(group)
            if stop:
                return

    def _groups(self, jobs: list[_Job]) -> list[list[_Job]]:
        groups: list[list[_Job]] = []
        open_groups: dict[Hashable, list[_Job]] = {}
        for job in jobs:
            if job.key is None:
                groups.append([job])
                continue
            g = open_groups.get(job.key)
            if g is None or len(g) >= self.max_batch:
                g = []
                open_groups[job.key] = g
                groups.append(g)
            g.append(job)
        return groups

    def _run(self, group: list[_Job]) -> None:
        group = [j for j in group if j.future.set_running_or_notify_cancel()]  # skip abandoned requests
        if not group:
            return
        handler = self.handlers[group[0].kind]
        t0 = time.perf_counter()
        try:
            results = handler([j.payload for j in group])
            if len(results) != len(group):
                raise RuntimeError(
                    f"handler {group[0].kind!r} returned {len(results)} results for {len(group)}"
                )
        except Exception as exc:  # noqa: BLE001 - every error is handed to its request
            if len(group) > 1:  # retry one by one: one bad input must not fail its neighbours
                for j in group:
                    self._run_single(handler, j)
            else:
                group[0].future.set_exception(exc)
            self._account(len(group), t0)
            return
        for j, r in zip(group, results, strict=True):
            j.future.set_result((r, len(group)))
        self._account(len(group), t0)

    def _run_single(self, handler: Handler, job: _Job) -> None:
        try:
            job.future.set_result((handler([job.payload])[0], 1))
        except Exception as exc:  # noqa: BLE001
            job.future.set_exception(exc)

    def _account(self, n: int, t0: float) -> None:
        s = self.stats
        s.jobs += n
        s.batches += 1
        s.largest_batch = max(s.largest_batch, n)
        s.busy_seconds += time.perf_counter() - t0
