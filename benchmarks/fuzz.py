#!/usr/bin/env python
"""The long fuzzing run: tests/test_fuzz.py's properties with the ``long`` hypothesis profile (10,000
seeded examples a test, registered in tests/conftest.py), and a table of what each test ran.

    python benchmarks/fuzz.py                  # all surfaces: pipeline, readers, tag schemes, the Space's tag
    python benchmarks/fuzz.py -k pipeline      # some of them (pytest's -k)

The suite runs the same tests with the ``suite`` profile (60 examples a test)."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

from common import ROOT, markdown_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-k", default=None, help="only the tests whose names match (pytest -k)")
    parser.add_argument("--profile", default="long", help="hypothesis profile (tests/conftest.py): long or suite")
    args = parser.parse_args()
    cmd = [sys.executable, "-m", "pytest", "tests/test_fuzz.py", "-q", "-p", "no:cacheprovider", "-W", "ignore",
           "--hypothesis-show-statistics", *(["-k", args.k] if args.k else [])]  # fmt: skip
    env = {**os.environ, "HYPOTHESIS_PROFILE": args.profile, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    print("+ HYPOTHESIS_PROFILE=" + args.profile, " ".join(cmd[1:]), flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    rows = []
    # hypothesis' statistics: a test's name line, then its phases' "N passing examples, M failing examples"
    for block in re.split(r"\n(?=tests/test_fuzz\.py::)", proc.stdout):
        name = re.match(r"tests/test_fuzz\.py::(\S+?):?\n", block)
        counts = re.findall(r"(\d+) passing examples?, (\d+) failing examples?, (\d+) invalid examples?", block)
        seconds = re.findall(r"phase \(([\d.]+) seconds\)", block)
        if name and counts:
            passing, failing, invalid = (sum(int(c[i]) for c in counts) for i in range(3))
            rows.append([name.group(1), passing, failing, invalid, f"{sum(map(float, seconds)):.0f}"])
    print(markdown_table(["test", "passing examples", "failing", "invalid (filtered)", "seconds"], rows))
    summary = [line for line in proc.stdout.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    print(summary[-1] if summary else proc.stdout[-3000:] + proc.stderr[-3000:])
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
