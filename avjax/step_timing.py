"""How long the accelerator sat idle between train steps (the "waits on input" figure).

Why: with asynchronous dispatch the loop thread runs ahead of the device, so the time it spends
in ``next(data_iter)`` mostly overlaps steps still computing and says little about stalls. The
device is idle before step s only from the moment step s−1 finished until step s was
dispatched; a watcher thread timestamps each step's completion (``block_until_ready`` releases
the GIL), and the loop records each dispatch. Idle time / elapsed time is the fraction of the
run the train step waited on the host (input, transfer, Python).
"""
from __future__ import annotations

import queue
import threading
import time


class DeviceIdleMeter:
    def __init__(self):
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._idle = 0.0
        self._last_done: float | None = None
        self._thread = threading.Thread(target=self._watch, name="device-idle-meter", daemon=True)
        self._thread.start()

    def dispatched(self, output) -> None:
        """Call right after a step is dispatched, with one of its output arrays."""
        self._queue.put((time.perf_counter(), output))

    def _watch(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                self._queue.task_done()
                return
            t_dispatch, output = item
            try:
                output.block_until_ready()
            except Exception:   # a failed step surfaces in the loop itself
                pass
            done = time.perf_counter()
            with self._lock:
                if self._last_done is not None:
                    self._idle += max(0.0, t_dispatch - self._last_done)
                self._last_done = done
            self._queue.task_done()

    def sync(self) -> None:
        """Wait until every dispatched step has been timed."""
        self._queue.join()

    def take_idle(self) -> float:
        """Idle seconds accumulated since the last call (after ``sync``)."""
        with self._lock:
            idle, self._idle = self._idle, 0.0
        return idle

    def restart(self) -> None:
        """Forget the last completion (e.g. after an evaluation or checkpoint pause)."""
        with self._lock:
            self._last_done = None

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

