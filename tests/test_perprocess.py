"""PerProcess: one value a process, built again in a forked child (as gunicorn forks its workers)."""

from __future__ import annotations

import os
import threading

from function.perprocess import PerProcess


def test_built_once_whatever_the_threads() -> None:
    built: list[int] = []
    start = threading.Barrier(8)

    def build() -> int:
        built.append(1)
        return len(built)

    holder = PerProcess(build)
    values: list[int] = []

    def get() -> None:
        start.wait()
        values.append(holder.get())

    threads = [threading.Thread(target=get) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert values == [1] * 8 and len(built) == 1 and not holder.built_elsewhere


def test_a_forked_child_builds_its_own() -> None:
    builders: list[int] = []
    holder = PerProcess(lambda: builders.append(os.getpid()) or os.getpid())
    parent = holder.get()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child, which reports through the pipe
        try:
            before = holder.built_elsewhere
            os.write(write, f"{before} {holder.get() == os.getpid()} {holder.built_elsewhere}".encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    assert os.read(read, 100).decode() == "True True False"
    assert holder.get() == parent and builders == [parent]  # the parent's value is the parent's
