"""Dynamic batching across requests: the sentences of concurrent requests are queued and
translated together.

A request (`submit`) is a list of sentences under one `Decoding` and a number of hypotheses
per sentence (`n_best`). Its sentences join a queue per (decoding, n_best); a batch is taken
from the queue whose oldest sentence has waited longest once that queue holds
`max_batch_tokens` source tokens or its oldest sentence has waited `max_wait_ms` (at once
when the batcher drains). A batch is at most `max_batch_tokens`
tokens (a longer sentence goes alone), so a request's sentences may span batches; each
result lands at its sentence's index, and the request is answered when its last sentence
is. A batch is taken only when one of the `workers` translator threads is free, so that
sentences arriving while all are busy join the next batch rather than queue behind it.
CTranslate2 releases the GIL while it translates, so the threads run in parallel.

Faults stay local: a translator error fails only the requests with a sentence in that
batch; `cancel` (a client gone, a timeout) drops the sentences not yet taken; `submit`
refuses a request beyond `queue` requests in progress (`QueueFull`) or once draining.
`across_requests=False` keeps each batch to one request's sentences: the baseline that
`benchmarks/serve_load.py` measures batching against.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from nmt.decoding import Decoding

log = logging.getLogger(__name__)


class QueueFull(RuntimeError):
    """`queue` requests are in progress already (or the batcher is draining)."""


class TranslationFailed(RuntimeError):
    """The translator raised on a batch holding one of this request's sentences."""


@dataclass(eq=False)
class Job:
    """One request in the batcher: its sentences, their translations as they come, timing."""

    sentences: list[str]
    decoding: Decoding
    future: asyncio.Future
    n_best: int = 1
    results: list = field(default_factory=list)  # a text each, or n_best hypotheses each
    left: int = 0
    cancelled: bool = False
    submitted: float = field(default_factory=time.perf_counter)
    started: float | None = None  # its first batch
    translate_s: float = 0.0  # the batches it was in, in total

    @property
    def queue_key(self) -> tuple[Decoding, int]:
        return self.decoding, self.n_best

    def timing(self) -> dict[str, float]:
        """Milliseconds: queued (until its first batch), translating, total so far."""
        now = time.perf_counter()
        queued = (self.started or now) - self.submitted
        return {
            "queue_ms": round(queued * 1000, 3),
            "translate_ms": round(self.translate_s * 1000, 3),
            "total_ms": round((now - self.submitted) * 1000, 3),
        }


@dataclass(eq=False)
class _Item:
    job: Job
    index: int
    tokens: int
    queued: float


class Batcher:
    """Batches the sentences of concurrent requests for one translator (see the module)."""

    def __init__(
        self,
        translate: Callable[[list[str], Decoding, int], list],
        count_tokens: Callable[[str], int],
        max_batch_tokens: int = 1024,
        max_wait_ms: float = 5.0,
        workers: int = 1,
        queue: int = 256,
        across_requests: bool = True,
        observe: Callable[[int, int, float], None] | None = None,
    ):
        self._translate, self._count = translate, count_tokens
        self.max_batch_tokens, self.max_wait = max_batch_tokens, max_wait_ms / 1000
        self.workers, self.queue, self.across_requests = workers, queue, across_requests
        self._observe = observe or (lambda sentences, tokens, seconds: None)
        self._queues: dict[tuple[Decoding, int], deque[_Item]] = {}
        self._jobs: set[Job] = set()
        self._batches: set[asyncio.Task] = set()
        self._pool: ThreadPoolExecutor | None = None
        self._loop_task: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self.draining = False

    # --- life -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="nmt-serve")
        self._wake, self._slots = asyncio.Event(), asyncio.Semaphore(self.workers)
        self._loop_task = asyncio.create_task(self._run())

    async def close(self) -> None:
        """Drain: translate every sentence accepted, then stop the threads."""
        self.draining = True
        if self._loop_task:
            self._wake.set()
            await self._loop_task
            self._loop_task = None
        if self._batches:
            await asyncio.gather(*self._batches, return_exceptions=True)
        if self._pool:
            self._pool.shutdown(wait=True)
            self._pool = None

    @property
    def running(self) -> bool:
        return self._loop_task is not None and not self.draining

    @property
    def depth(self) -> int:
        """Sentences queued, not yet in a batch."""
        return sum(len(q) for q in self._queues.values())

    @property
    def in_progress(self) -> int:
        return len(self._jobs)

    # --- requests -------------------------------------------------------------------------

    def submit(self, sentences: list[str], decoding: Decoding, n_best: int = 1) -> Job:
        """Queue a request's sentences; await `job.future` for their translations in order
        (`translate(lines, decoding, n_best)`'s results: texts, or lists of hypotheses)."""
        if self.draining or not self._loop_task:
            raise QueueFull("the server is shutting down")
        if len(self._jobs) >= self.queue:
            raise QueueFull(
                f"{len(self._jobs)} requests in progress (the queue holds {self.queue})"
            )
        future = asyncio.get_running_loop().create_future()
        job = Job(
            list(sentences), decoding, future, n_best, [None] * len(sentences), len(sentences)
        )
        if not sentences:
            future.set_result([])
            return job
        self._jobs.add(job)
        now = time.perf_counter()
        q = self._queues.setdefault(job.queue_key, deque())
        q.extend(_Item(job, i, self._count(s) + 1, now) for i, s in enumerate(sentences))
        self._wake.set()
        return job

    def cancel(self, job: Job) -> None:
        """Forget a request: its sentences not yet in a batch are dropped."""
        job.cancelled = True
        self._jobs.discard(job)
        q = self._queues.get(job.queue_key)
        if q:
            kept = [item for item in q if item.job is not job]
            q.clear()
            q.extend(kept)
        if not job.future.done():
            job.future.cancel()

    # --- the loop -------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            self._queues = {d: q for d, q in self._queues.items() if q}
            if not self._queues:
                if self.draining:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            key, q = min(self._queues.items(), key=lambda kq: kq[1][0].queued)
            waited = time.perf_counter() - q[0].queued
            full = sum(item.tokens for item in q) >= self.max_batch_tokens
            if not (full or self.draining or waited >= self.max_wait):
                self._wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.max_wait - waited)
                continue
            await self._slots.acquire()  # a free thread: what arrived meanwhile joins
            batch = self._take(q)
            if not batch:
                self._slots.release()
                continue
            task = asyncio.create_task(self._execute(key, batch))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)

    def _take(self, q: deque[_Item]) -> list[_Item]:
        batch, tokens = [], 0
        while q and (not batch or tokens + q[0].tokens <= self.max_batch_tokens):
            if batch and not self.across_requests and q[0].job is not batch[0].job:
                break
            item = q.popleft()
            batch.append(item)
            tokens += item.tokens
        return batch

    async def _execute(self, key: tuple[Decoding, int], batch: list[_Item]) -> None:
        try:
            start = time.perf_counter()
            for item in batch:
                item.job.started = item.job.started or start
            lines = [item.job.sentences[item.index] for item in batch]
            loop = asyncio.get_running_loop()
            try:
                out = await loop.run_in_executor(self._pool, self._translate, lines, *key)
            except Exception as e:
                log.exception("a batch of %d sentences failed", len(batch))
                for job in {item.job for item in batch}:
                    self._finish(job, error=TranslationFailed(f"translation failed: {e}"))
                return
            seconds = time.perf_counter() - start
            self._observe(len(batch), sum(item.tokens for item in batch), seconds)
            for job in {item.job for item in batch}:
                job.translate_s += seconds
            for item, text in zip(batch, out, strict=True):
                job = item.job
                job.results[item.index] = text
                job.left -= 1
                if job.left == 0:
                    self._finish(job)
        finally:
            self._slots.release()

    def _finish(self, job: Job, error: Exception | None = None) -> None:
        self._jobs.discard(job)
        if job.future.done() or job.cancelled:
            return
        if error is not None:
            job.future.set_exception(error)
            q = self._queues.get(job.queue_key)
            if q:  # its other sentences need no translating now
                kept = [item for item in q if item.job is not job]
                q.clear()
                q.extend(kept)
        else:
            job.future.set_result(list(job.results))
