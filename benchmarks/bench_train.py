"""Train benchmark: seconds per iteration (steps/s) and peak memory at 128 and 256 px for the
`munit` preset, batch 1, per precision on the current device, next to the naive baseline; JSON.

It is `munit bench` with these defaults; any `munit bench` option after them overrides them:

    python benchmarks/bench_train.py --device cpu --repeats 5 --threads 1
"""

from __future__ import annotations

import sys

from munit_cli.cli import app

DEFAULTS = ["bench", "--sizes", "128,256", "--batch-sizes", "1", "--translate-size", "0", "--memory-size", "0", "--json"]

if __name__ == "__main__":
    app(DEFAULTS + sys.argv[1:], prog_name="bench_train.py")
