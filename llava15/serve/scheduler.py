"""One thread owns the model and decodes every request of the server in one running batch.

Requests (`Job`s) wait in a bounded queue. Between two decoding steps the scheduler admits as
many waiting jobs as there are free slots, prefills them together into a fresh cache and merges
that cache into the running batch (see `serve/batch.py`), so a request decodes the same tokens
as it would alone. A row leaves the batch when it ends (EOS, stop check, token budget) or when
its job is cancelled (a client that went away), which frees its slot for the next step.

Events reach the job's `sink` from the scheduler thread; the sink must not block (the server's
sink hands them to its event loop with `call_soon_threadsafe`).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from llava15.infer.generate import SamplingParams, sample_next
from llava15.model.llava import Llava
from llava15.serve.batch import Batch, decode_step, keep_rows, merge, prefill

log = logging.getLogger(__name__)


class QueueFull(RuntimeError):
    """The waiting queue holds `max_queue` jobs already; the client should retry later."""


@dataclass(frozen=True)
class Event:
    """A new token (`token`), or the end of a job: `finish` is "stop" (EOS or stop check),
    "length" (token budget), "cancelled" or "error" (then `error` says why)."""

    token: int | None = None
    finish: str | None = None
    error: str | None = None


@dataclass(eq=False)
class Job:
    """One request: expanded prompt ids, its images' pixel values, sampling parameters.

    `pixel_values` is (N,3,H,W), or for AnyRes a list of per-image views with `image_sizes`
    (width, height). `budget` is the most new tokens it may produce (already capped by the
    context length); `stop_check(tokens)` may end it early (stop strings). `tokens` grows as it
    decodes; `image_encode_s` is set by the prefill, before the first event: this job's share of
    the time its prefill spent encoding images, split among the jobs prefilled together by their
    number of views (the vision tower's cost grows with it).
    """

    prompt: list[int]
    pixel_values: torch.Tensor | list[torch.Tensor] | None
    params: SamplingParams
    budget: int
    sink: Callable[[Event], None]
    stop_check: Callable[[list[int]], bool] | None = None
    image_sizes: list[tuple[int, int]] = field(default_factory=list)
    image_encode_s: float = 0.0
    tokens: list[int] = field(default_factory=list)
    cancelled: threading.Event = field(default_factory=threading.Event)
    generator: torch.Generator | None = None

    def __post_init__(self) -> None:
        if self.params.seed is not None:
            self.generator = torch.Generator().manual_seed(self.params.seed)

    @property
    def views(self) -> int:
        """Images, or AnyRes views, that the vision tower encodes for this job."""
        if isinstance(self.pixel_values, list):
            return sum(v.shape[0] for v in self.pixel_values)
        return 0 if self.pixel_values is None else self.pixel_values.shape[0]


@dataclass(frozen=True)
class SchedulerStats:
    running: int
    queued: int
    max_batch_size: int
    max_queue: int


class Scheduler:
    """Owns `model` on its own thread between `start()` and `stop()`.

    `submit` raises `QueueFull` when `max_queue` jobs are waiting; `cancel` drops a job at once
    if it is still waiting, or before the next decoding step if it is running.
    """

    def __init__(self, model: Llava, eos_token_ids: list[int], pad_token_id: int = 0,
                 max_batch_size: int = 32, max_queue: int = 128) -> None:
        if max_batch_size < 1 or max_queue < 0:
            raise ValueError("max_batch_size must be >= 1 and max_queue >= 0")
        self.model = model
        self.eos = torch.tensor(sorted(set(eos_token_ids)), dtype=torch.long)
        self.pad_token_id = pad_token_id
        self.max_batch_size = max_batch_size
        self.max_queue = max_queue
        self._pending: deque[Job] = deque()
        self._running: list[Job] = []
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    # -- the client side (any thread) ---------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the scheduler is already started")
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="llava15-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Finish the current step, cancel every job, and join the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def submit(self, job: Job) -> None:
        if job.budget < 0:
            raise ValueError(f"budget must be >= 0, got {job.budget}")
        with self._cond:
            if self._stopping or self._thread is None:
                raise RuntimeError("the scheduler is not running")
            if len(self._pending) >= self.max_queue:
                raise QueueFull(f"{len(self._pending)} requests are waiting already")
            self._pending.append(job)
            self._cond.notify_all()

    def cancel(self, job: Job) -> None:
        with self._cond:
            job.cancelled.set()
            if job in self._pending:  # waiting: leave the queue now, its place is free at once
                self._pending.remove(job)
                self._emit(job, Event(finish="cancelled"))

    def stats(self) -> SchedulerStats:
        with self._cond:
            return SchedulerStats(len(self._running), len(self._pending), self.max_batch_size,
                                  self.max_queue)

    # -- the scheduler thread ------------------------------------------------------------------

    def _loop(self) -> None:
        batch: Batch | None = None
        while True:
            with self._cond:
                while not self._pending and batch is None and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    break
                newcomers = []
                while self._pending and len(self._running) + len(newcomers) < self.max_batch_size:
                    newcomers.append(self._pending.popleft())
            try:
                batch = self._step(batch, newcomers)
            except Exception as e:  # a failed step must not kill the server: fail its jobs
                log.exception("decoding step failed")
                for job in self._running:
                    self._emit(job, Event(finish="error", error=f"{type(e).__name__}: {e}"))
                batch = None
                self._set_running([])
        with self._cond:
            jobs = self._running + list(self._pending)
            self._pending.clear()
        for job in jobs:
            self._emit(job, Event(finish="cancelled"))
        self._set_running([])

    def _step(self, batch: Batch | None, newcomers: list[Job]) -> Batch | None:
        newcomers = [job for job in newcomers if self._admit(job)]
        if newcomers:
            fresh = self._prefill(newcomers)
            if fresh is not None:
                self._set_running(self._running + newcomers)  # first: a failed merge fails them too
                batch = fresh if batch is None else merge(batch, fresh)
        if batch is None:
            return None
        jobs = self._running
        next_tokens = sample_next(batch.logits, [j.params for j in jobs], [j.generator for j in jobs])
        is_eos = torch.isin(next_tokens.cpu(), self.eos).tolist()
        keep = []
        for i, job in enumerate(jobs):
            if job.cancelled.is_set():
                self._emit(job, Event(finish="cancelled"))
                continue
            if is_eos[i]:
                self._emit(job, Event(finish="stop"))
                continue
            token = int(next_tokens[i])
            job.tokens.append(token)
            self._emit(job, Event(token=token))
            if job.stop_check is not None and job.stop_check(job.tokens):
                self._emit(job, Event(finish="stop"))
            elif len(job.tokens) >= job.budget:
                self._emit(job, Event(finish="length"))
            else:
                keep.append(i)
        self._set_running([jobs[i] for i in keep])
        if not keep:
            return None
        batch = keep_rows(batch, keep)
        return decode_step(self.model, batch, next_tokens[keep])

    def _admit(self, job: Job) -> bool:
        """Jobs that need no decoding end here (cancelled while queued, or a zero budget)."""
        if job.cancelled.is_set():
            self._emit(job, Event(finish="cancelled"))
            return False
        if job.budget == 0:
            self._emit(job, Event(finish="length"))
            return False
        return True

    def _prefill(self, jobs: list[Job]) -> Batch | None:
        """Prefill the newcomers together, reordering `jobs` in place into the batch's row
        order; if that fails, only they fail."""
        images = [j.pixel_values for j in jobs if j.pixel_values is not None]
        if images and isinstance(images[0], list):  # AnyRes: per-image views, kept apart
            pixel_values = [views for per_job in images for views in per_job]
        else:
            pixel_values = torch.cat(images) if images else None
        sizes = [size for j in jobs for size in j.image_sizes]
        try:
            batch, encode_s = prefill(self.model, [j.prompt for j in jobs], pixel_values,
                                      [j.budget for j in jobs], self.pad_token_id, sizes)
        except Exception as e:  # e.g. an image-token count mismatch: the running batch goes on
            log.exception("prefill failed")
            for job in jobs:
                self._emit(job, Event(finish="error", error=f"{type(e).__name__}: {e}"))
            return None
        views = sum(j.views for j in jobs)
        for job in jobs:
            job.image_encode_s = encode_s * job.views / views if views else 0.0
        jobs[:] = [jobs[row] for row in batch.rows]  # the batch's row order, which the prefill chose
        return batch

    def _set_running(self, jobs: list[Job]) -> None:
        with self._cond:
            self._running = jobs

    @staticmethod
    def _emit(job: Job, event: Event) -> None:
        try:
            job.sink(event)
        except Exception:  # a broken sink is that client's problem: stop decoding for it
            log.exception("event sink failed; cancelling the job")
            job.cancelled.set()
