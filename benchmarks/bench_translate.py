"""Translate benchmark: seconds per image for one 256 px image and 8 styles, `munit` preset, per
precision on the current device, next to the naive baseline, plus peak memory at 1024 px; JSON.

It is `munit bench` with these defaults; any `munit bench` option after them overrides them:

    python benchmarks/bench_translate.py --device cpu --repeats 5 --threads 1
"""

from __future__ import annotations

import sys

from munit_cli.cli import app

DEFAULTS = ["bench", "--translate-size", "256", "--styles", "8", "--memory-size", "1024", "--sizes", "", "--json"]

if __name__ == "__main__":
    app(DEFAULTS + sys.argv[1:], prog_name="bench_translate.py")
