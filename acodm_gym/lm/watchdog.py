"""A rank that hangs or dies stops every other rank after ``train.dist_timeout``, with one line naming it.

A collective cannot be trusted to time out on its own: DeepSpeed's data-parallel group is a
``new_group`` clone of the world, which takes torch's default timeout (30 min on gloo) rather than
the world's, and NCCL's own watchdog kills the process without naming the rank that was missing.
So every rank runs a thread that bumps its counter in the launcher's rendezvous store (a TCPStore)
and reads the others': a rank whose counter stands still for ``train.dist_timeout`` seconds is
stopped (SIGSTOP, a stalled node), dead or cut off, and the thread prints one line and ends this
process with exit 1. The thread beats while the main thread computes or waits in a collective, so a
long step is never taken for a hang. A collective that fails first (gloo's own timeout, a dead peer's
closed socket) asks ``lost_ranks`` which rank went silent, so its message is the same line.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from datetime import timedelta
from typing import Callable

import torch.distributed as dist

KEY = "acodm_gym/heartbeat/{}"


class Watchdog:
    """This rank's heartbeat, and the verdict on the others' (see the module docstring).

    :param timeout: seconds (``train.dist_timeout``) a rank may stay silent before the others stop
    :param rank: this process's rank
    :param world: the number of ranks
    """

    def __init__(self, timeout: float, rank: int, world: int):
        self.timeout, self.rank = float(timeout), rank
        self.interval = max(0.2, min(5.0, self.timeout / 20))
        self.store = dist.TCPStore(  # the rendezvous store, at the address the process group used (env://)
            os.environ["MASTER_ADDR"],
            int(os.environ["MASTER_PORT"]),
            is_master=False,
            timeout=timedelta(seconds=self.timeout),
            wait_for_workers=False,
        )
        self.peers = [r for r in range(world) if r != rank]
        now = time.monotonic()
        self._seen = {r: (-1, now) for r in self.peers}  # a peer's last counter, and when it last changed
        self._store_ok = now
        self.hint: Callable[[], str] = lambda: ""  # where to resume from (set by the runner)
        self.reported = threading.Event()
        self._claim = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="acodm-watchdog", daemon=True)

    def start(self) -> Watchdog:
        self._thread.start()
        return self

    def _beat(self) -> None:
        """One heartbeat out, the peers' in (``add(key, 0)`` reads a counter without waiting for it)."""
        try:
            self.store.add(KEY.format(self.rank), 1)
            counts = {r: self.store.add(KEY.format(r), 0) for r in self.peers}
        except (RuntimeError, OSError):  # the store did not answer within the timeout: its host is silent
            return
        now = self._store_ok = time.monotonic()
        for r, count in counts.items():
            if count != self._seen[r][0]:
                self._seen[r] = (count, now)

    def silent(self, seconds: float) -> list[str]:
        """Who has not answered for ``seconds``: peers by rank, or the store's host if the store is silent."""
        now = time.monotonic()
        if now - self._store_ok > seconds:
            host = "the launcher" if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True" else "rank 0"
            return [
                f"{host} (it holds the rendezvous store {os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')})"
            ]
        return [f"rank {r}" for r, (_, changed) in self._seen.items() if now - changed > seconds]

    def _loop(self) -> None:
        while not self.reported.is_set():
            self._beat()
            lost = self.silent(self.timeout)
            if lost and self.claim():
                print(
                    f"error: {self.message(lost, f'did not answer for {self.timeout:g} s (train.dist_timeout)')}",
                    file=sys.stderr,
                    flush=True,
                )
                os._exit(1)  # the main thread may be blocked in a collective that never returns
            time.sleep(self.interval)

    def lost_ranks(self) -> list[str]:
        """After a failed collective: the peers (or store host) that went silent, waiting a few beats to tell."""
        time.sleep(max(3.0, 3 * self.interval))
        return self.silent(max(2.0, 2 * self.interval))

    def claim(self) -> bool:
        """True for the first caller only: the thread and a failed collective may both see the loss, one reports it."""
        with self._claim:
            first = not self.reported.is_set()
            self.reported.set()
        return first

    def message(self, lost: list[str], what: str) -> str:
        try:
            hint = self.hint()
        except Exception:  # noqa: BLE001 - the line goes out even if the checkpoints cannot be read
            hint = ""
        return (
            f"{' and '.join(lost)} {what}: it hung or died, so rank {self.rank} stops too{'; ' + hint if hint else ''}"
        )
