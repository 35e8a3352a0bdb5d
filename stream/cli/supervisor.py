"""``soiree worker --processes N|auto``: one command per machine, N worker processes.

Faust runs one event loop per process, so a machine with several cores needs several workers.
The supervisor starts them (the same command line without ``--processes``), restarts one that
dies (a crash, a ``kill -9``) after a short backoff, and on SIGTERM or SIGINT stops them all and
waits for them. The workers share the consumer group: Kafka spreads the partitions among them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from types import FrameType

__all__ = ["process_count", "supervise", "RESTART_BACKOFF"]

#: Seconds before a dead worker is started again (doubling, up to ``MAX_BACKOFF``, while it keeps dying fast)
RESTART_BACKOFF = 1.0
MAX_BACKOFF = 30.0
#: A worker that lived this long before dying is restarted at once (its death was not a crash loop)
STABLE_AFTER = 60.0


def process_count(value: str) -> int:
    """``auto`` (one per core) or a number from 1; ValueError saying what is expected."""
    if value == "auto":
        return max(1, os.cpu_count() or 1)
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError(f"--processes {value!r}: a number from 1, or auto (one per core)")
    return count


def supervise(
    command: Sequence[str], count: int, say: Callable[[str], None], env: dict[str, str] | None = None
) -> int:
    """Run ``count`` copies of ``command`` until SIGTERM/SIGINT; returns the exit code."""
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    children: list[subprocess.Popen[bytes] | None] = [None] * count
    started = [0.0] * count
    backoff = [RESTART_BACKOFF] * count
    due = [0.0] * count
    try:
        while not stopping:
            now = time.monotonic()
            for slot in range(count):
                child = children[slot]
                if child is not None and child.poll() is not None:
                    lived = now - started[slot]
                    backoff[slot] = (
                        RESTART_BACKOFF if lived > STABLE_AFTER else min(backoff[slot] * 2, MAX_BACKOFF)
                    )
                    due[slot] = now + (0 if lived > STABLE_AFTER else backoff[slot])
                    say(f"worker {slot + 1} (pid {child.pid}) exited with {child.returncode}; restarting it")
                    children[slot] = None
                if children[slot] is None and now >= due[slot]:
                    children[slot] = subprocess.Popen(list(command), env=env)
                    started[slot] = now
                    say(f"worker {slot + 1} of {count} started (pid {children[slot].pid})")  # type: ignore[union-attr]
            time.sleep(0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        running = [child for child in children if child is not None and child.poll() is None]
        for child in running:
            child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for child in running:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    say(f"stopped {count} workers")
    return 0


def worker_command(argv: Sequence[str]) -> list[str]:
    """This process's ``soiree worker`` command line without ``--processes``."""
    args: list[str] = []
    skip = False
    for arg in argv[1:]:
        if skip:
            skip = False
            continue
        if arg == "--processes":
            skip = True
            continue
        if arg.startswith("--processes="):
            continue
        args.append(arg)
    return [sys.executable, "-m", "stream.cli", *args]
