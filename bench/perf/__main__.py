import os
import sys

from bench.perf.server import SERVER_ENV

if any(os.environ.get(k) != v for k, v in SERVER_ENV.items()):
    # The bare engine runs in this process: give it the preloads the function runs with (allocator,
    # zlib). The dynamic loader reads LD_PRELOAD (glibc MALLOC_ARENA_MAX) when the process starts, and
    # the allocator alone moved rapidocr by 17 %.
    args = [sys.executable, "-m", "bench.perf", *sys.argv[1:]]
    os.execve(sys.executable, args, {**os.environ, **SERVER_ENV})

from bench.perf.run import main

main()
