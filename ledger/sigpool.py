"""The signature pool of appends and replay: Ed25519 checks on worker threads or processes (spec 7.3 step 5).

:class:`ParallelVerifier` runs the checks a batch's rules ask for (:meth:`ParallelVerifier.start`,
:meth:`Submitted.wait`), and checks made *ahead* of the rules (:meth:`ParallelVerifier.check_ahead`):
as soon as a batch is decoded, each entry's signature is checked against the key its key id names in the
log's registry before the batch, while this thread reads the state rows and runs the rules. A check ahead
is only a result kept for later: an entry counts as verified only when the job the rules ask for, the same
(public key, Sig_structure, signature), passed, ahead or not (:meth:`EarlyChecks.require`).

With threads, the pool's threads wait for the GIL while the calling thread runs Python (each check needs it
between two native calls), so checks ahead of Python work overlap little; worker processes
(``processes=True``) do not share the GIL and overlap fully. A pool whose process died is replaced, and the
checks it held are made again in this thread; a worker whose parent was killed outright exits
(:func:`watch_parent`). Checks go out in chunks that shrink towards the end of a batch; with worker
processes the caller, when it comes to wait, checks the chunks no worker has started yet itself
(:class:`Submitted`).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import BrokenExecutor, Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import Any

from ledger.errors import VerificationError
from ledger.keys import verify_ed25519
from ledger.rules import SignatureJob, verify_sequential

__all__ = ["EarlyChecks", "ParallelVerifier", "Submitted", "check_each", "watch_parent"]


#: Fewest checks in a chunk handed to the pool (about 2 ms of work).
MIN_CHUNK = 32
#: How often a worker process looks for its parent (seconds).
PARENT_POLL = 0.5


def watch_parent(parent: int) -> None:
    """In a worker process: exit as soon as ``parent`` is no longer this process's parent.

    A pool's worker waits for work on a queue whose writing end it holds itself, so a parent killed
    outright (SIGKILL, the OOM killer) would leave it waiting forever; this thread ends it instead.
    """
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _ready() -> None:
    # A task that starts a worker process and does nothing else (ParallelVerifier.warm).
    return None


def check_each(jobs: Sequence[SignatureJob]) -> list[bool]:
    """Whether each job's signature verifies; never raises for a bad one (checks ahead of the rules)."""
    out = []
    for pub, message, signature in jobs:
        try:
            verify_ed25519(pub, message, signature)
        except VerificationError:
            out.append(False)
        else:
            out.append(True)
    return out


class Submitted:
    """Chunks of checks handed to the pool, with their futures.

    With ``take_back`` (:class:`ParallelVerifier` sets it for worker processes), a chunk no worker has started
    when the caller comes to wait is taken back and checked in the calling thread (:meth:`_take_back`), the
    last first, while the workers go on with theirs from the front: the caller's core checks instead of
    idling, and whichever side is slower (a busy worker, a long batch) gets help.
    """

    def __init__(self, chunks: list[list[SignatureJob]], futures: list[Future[Any]],
                 check: Callable[[list[SignatureJob]], Any] = verify_sequential, *, take_back: bool = True) -> None:
        self.chunks = chunks
        self.futures = futures
        self._check = check
        self._takes_back = take_back
        self._here: dict[int, tuple[Any, VerificationError | None]] = {}  # chunk -> (result, error), checked here

    def _take_back(self) -> None:
        # Futures start in the order submitted: once one cannot be cancelled, the ones before it have started too.
        if not self._takes_back:
            return
        for c in range(len(self.futures) - 1, -1, -1):
            if c in self._here:
                continue
            if not self.futures[c].cancel():
                return
            try:
                self._here[c] = (self._check(self.chunks[c]), None)
            except VerificationError as e:
                self._here[c] = (None, e)

    def _outcome(self, c: int) -> tuple[Any, VerificationError | None]:
        # (result, error) of chunk c, wherever it was checked; a chunk whose worker process died is checked here.
        if c not in self._here:
            try:
                self._here[c] = (self.futures[c].result(), None)
            except BrokenExecutor:
                try:
                    self._here[c] = (self._check(self.chunks[c]), None)
                except VerificationError as e:
                    self._here[c] = (None, e)
            except VerificationError as e:
                self._here[c] = (None, e)
        return self._here[c]

    def wait(self) -> None:
        """Wait for every chunk (checking here those not yet started), then raise the first failure.

        Raises:
            VerificationError: a signature did not verify.
        """
        self._take_back()
        errors = [e for e in (self._outcome(c)[1] for c in range(len(self.chunks))) if e is not None]
        if errors:
            raise errors[0]

    def cancel(self) -> None:
        """Cancel what has not started and wait for the rest (a batch that failed before its commit)."""
        for f in self.futures:
            f.cancel()
        wait_futures(self.futures)


class EarlyChecks(Submitted):
    """Checks submitted ahead of the rules: which jobs they cover and, once done, whether each passed."""

    def __init__(self, chunks: list[list[SignatureJob]], futures: list[Future[Any]], *, take_back: bool = True) -> None:
        super().__init__(chunks, futures, check_each, take_back=take_back)
        self._at = {job: (c, i) for c, chunk in enumerate(chunks) for i, job in enumerate(chunk)}

    def covers(self, job: SignatureJob) -> bool:
        """Whether this exact job (key, message, signature) is among the checks ahead."""
        return job in self._at

    def require(self, jobs: Iterable[SignatureJob]) -> None:
        """Wait for the checks ahead among ``jobs`` (checking here those not yet started) and raise if one failed.

        Raises:
            VerificationError: a signature among them does not verify.
        """
        self._take_back()
        for job in jobs:
            place = self._at.get(job)
            if place is not None and not self._outcome(place[0])[0][place[1]]:
                raise VerificationError("Ed25519 signature does not verify")


class ParallelVerifier:
    """Runs batches of Ed25519 checks on a small pool of threads or processes (spec 7.3 step 5).

    pynacl releases the GIL while it verifies, so two threads do nearly twice
    the work of one while the calling thread waits. :meth:`start` returns at once;
    :meth:`Submitted.wait` raises the first failure. Calling the object does both, which
    is the shape ``RegistryState.apply_batch`` expects for ``verify_signatures``.

    Args:
        workers: threads or processes in the pool; by default two threads, or one process per core but one
            (the calling thread keeps a core).
        executor: a pool to use instead of one of this object's own (not shut down by :meth:`close`).
        processes: with no ``executor``, use worker processes (started with ``spawn``, on first use or by
            :meth:`warm`) instead of threads, so that checks overlap the caller's Python work (a node's
            appends). A program that uses them must guard its main module with ``if __name__ == "__main__"``.
        take_back: whether the caller, when it comes to wait, checks the chunks no worker has started
            (:class:`Submitted`); by default only with worker processes. Pool threads check at full speed
            while the caller waits, and a third thread checking beside them slows them down (it needs the GIL
            between two native calls as they do): a replay of 100,000 entries on two threads, 9,200 entries/s
            without, 7,800-8,200 with.
    """

    def __init__(self, workers: int | None = None, executor: Executor | None = None, *,
                 processes: bool = False, take_back: bool | None = None) -> None:
        if workers is None:
            workers = max(1, (os.cpu_count() or 2) - 1) if processes and executor is None else 2
        self._workers = workers
        self._own = executor is None
        self._processes = processes and executor is None
        self._executor = executor or self._new_pool()
        self._takes_back = self._processes if take_back is None else take_back

    def _new_pool(self) -> Executor:
        if self._processes:
            return ProcessPoolExecutor(self._workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=watch_parent, initargs=(os.getpid(),))
        return ThreadPoolExecutor(self._workers, thread_name_prefix="ed25519")

    def warm(self) -> None:
        """Start every worker process now rather than on first use, so that the first batch (a restarted
        node's first replication, say) does not wait for them; nothing to do for threads."""
        if self._processes:
            wait_futures([self._executor.submit(_ready) for _ in range(self._workers)])

    def close(self) -> None:
        """Shut down the pool if this object created it."""
        if self._own:
            self._executor.shutdown(wait=True)

    def _submit(self, fn: Callable[[list[SignatureJob]], Any], jobs: Sequence[SignatureJob]
                ) -> tuple[list[list[SignatureJob]], list[Future[Any]]]:
        # Chunks that shrink towards the end of the batch: the workers take them from the front, and the
        # caller takes back from the end those not started when it comes to wait (Submitted._take_back), so
        # the last of the work is split finely between them.
        jobs = list(jobs)
        chunks, at = [], 0
        while at < len(jobs):
            step = max(MIN_CHUNK, (len(jobs) - at) // (2 * (self._workers + 1)))
            chunks.append(jobs[at:at + step])
            at += step
        futures = []
        for chunk in chunks:
            try:
                futures.append(self._executor.submit(fn, chunk))
            except BrokenExecutor:  # a worker process died since the last batch: a new pool
                if not self._own:
                    raise
                self._executor.shutdown(wait=False)
                self._executor = self._new_pool()
                futures.append(self._executor.submit(fn, chunk))
        return chunks, futures

    def start(self, jobs: Sequence[SignatureJob]) -> Submitted:
        """Submit ``jobs``; :meth:`Submitted.wait` for the verdict."""
        return Submitted(*self._submit(verify_sequential, jobs), take_back=self._takes_back)

    def check_ahead(self, jobs: Sequence[SignatureJob]) -> EarlyChecks:
        """Submit checks ahead of the rules; their results are read with :meth:`EarlyChecks.require`."""
        return EarlyChecks(*self._submit(check_each, jobs), take_back=self._takes_back)

    def __call__(self, jobs: Sequence[SignatureJob]) -> None:
        """Verify ``jobs`` and return only when all passed.

        Raises:
            VerificationError: a signature did not verify.
        """
        self.start(jobs).wait()
