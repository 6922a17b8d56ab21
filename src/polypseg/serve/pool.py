"""A fixed pool of inference worker threads behind a bounded queue, with micro-batching.

At most ``workers + max_queue`` requests are admitted at once (running or waiting); one more is refused
at once (the app answers 503 with ``Retry-After``), so load never piles up in memory. Each worker owns a
shallow copy of the predictor: the model's weights are shared read-only (inference mode changes no
state), while the per-request settings (``tta``) live on the worker's own copy, so no two threads ever
change the same predictor.

Micro-batching: a worker that takes a job also takes the jobs already waiting behind it, up to
``max_batch``, and hands them to ``run_batch`` together, so under load one forward pass serves several
requests (never waiting for more to arrive: a lone request runs at once). ``run_batch(predictor, jobs)``
returns one result per job, or the exception that job raised (that job's future gets it; the others
are unaffected). Without ``run_batch`` a job is a callable ``fn(predictor)``.
"""

from __future__ import annotations

import copy
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

Job = Any  # a callable fn(predictor), or whatever the pool's run_batch takes
RunBatch = Callable[[Any, list[Any]], list[Any]]


def run_each(predictor: Any, jobs: list[Any]) -> list[Any]:
    """The default ``run_batch``: call each job ``fn(predictor)`` in turn; an exception is its result."""
    results: list[Any] = []
    for fn in jobs:
        try:
            results.append(fn(predictor))
        except Exception as exc:  # handed to that job's waiting request, which answers for it
            results.append(exc)
    return results


class QueueFullError(Exception):
    """Raised by :meth:`InferencePool.submit` when every worker is busy and the queue is full."""


class InferencePool:
    """``workers`` threads, each running jobs from a shared FIFO queue, in batches of up to ``max_batch``.

    Args:
        predictor: the :class:`polypseg.inference.Predictor` (or any object with its interface) to copy
            into each worker.
        workers: worker threads (at least 1).
        max_queue: jobs that may wait while every worker is busy (0: none wait).
        max_batch: most jobs one worker runs together (1: one at a time).
        run_batch: runs a list of jobs on a worker's predictor (see the module docstring); default
            :func:`run_each`.
    """

    def __init__(self, predictor: Any, workers: int, max_queue: int, max_batch: int = 1,
                 run_batch: RunBatch = run_each) -> None:  # fmt: skip
        self.workers, self.max_queue, self.max_batch = int(workers), int(max_queue), max(1, int(max_batch))
        self._run_batch = run_batch
        self._jobs: queue.Queue[tuple[Job, Future] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._admitted = 0  # jobs queued or running
        self._running = 0
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, args=(copy.copy(predictor),), name=f"polypseg-infer-{i}", daemon=True)
            for i in range(self.workers)
        ]
        for t in self._threads:
            t.start()

    @property
    def waiting(self) -> int:
        """Jobs admitted but not yet started by a worker."""
        with self._lock:
            return self._admitted - self._running

    @property
    def running(self) -> int:
        """Jobs a worker is running now."""
        with self._lock:
            return self._running

    def has_room(self) -> bool:
        """Whether :meth:`submit` would admit a job now."""
        with self._lock:
            return not self._closed and self._admitted < self.workers + self.max_queue

    def submit(self, fn: Job) -> Future:
        """Queue ``fn(predictor)``; its result (or exception) arrives in the returned future.

        A future cancelled before a worker starts it is skipped. Raises :class:`QueueFullError` when
        ``workers + max_queue`` jobs are already admitted, or when the pool is closed.
        """
        fut: Future = Future()
        with self._lock:
            if self._closed or self._admitted >= self.workers + self.max_queue:
                raise QueueFullError
            self._admitted += 1
        self._jobs.put((fn, fut))
        return fut

    def _take(self) -> list[tuple[Job, Future]] | None:
        """The next job and those already waiting behind it (up to ``max_batch``); None: stop."""
        first = self._jobs.get()
        if first is None:
            return None
        batch = [first]
        while len(batch) < self.max_batch:
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                break
            if item is None:  # close(): put the stop mark back for after this batch
                self._jobs.put(None)
                break
            batch.append(item)
        return batch

    def _work(self, predictor: Any) -> None:
        while (batch := self._take()) is not None:
            live = []
            for job, fut in batch:
                if fut.set_running_or_notify_cancel():
                    live.append((job, fut))
                else:  # cancelled while waiting (timed out)
                    self._release(started=0)
            if not live:
                continue
            with self._lock:
                self._running += len(live)
            try:
                results = self._run_batch(predictor, [job for job, _ in live])
            except BaseException as exc:  # the whole batch failed: every waiting request answers for it
                results = [exc] * len(live)
            for (_, fut), result in zip(live, results, strict=True):
                if isinstance(result, BaseException):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)
            self._release(started=len(live), admitted=len(live))

    def _release(self, started: int, admitted: int = 1) -> None:
        with self._lock:
            self._admitted -= admitted
            self._running -= started

    def close(self, timeout_s: float = 5.0) -> None:
        """Refuse new jobs, let the workers finish the queued ones, and wait up to ``timeout_s`` for them."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for _ in self._threads:
            self._jobs.put(None)
        for t in self._threads:
            t.join(timeout_s)
