"""Run `swarmlog bench` benchmarks and print one JSON document with all results.

    .venv/bin/python benchmarks/run_all.py [--events N] [--repeat K] [NAME ...]

Without names: every benchmark but ``compare`` (which needs the peers extra: ``make peers``).
Each benchmark measures its ceilings and its physical limit in the same run; record results in
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from swarmlog.harness.bench import BENCHMARKS, run_benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("names", nargs="*", default=sorted(set(BENCHMARKS) - {"compare"}))
    args = parser.parse_args()
    results = [
        dataclasses.asdict(run_benchmark(name, args.events))
        for _ in range(args.repeat)
        for name in args.names
    ]
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
