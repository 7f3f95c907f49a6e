"""The whole suite's time: `make test` as it is, beside the suite as it was when issue 14 was filed.

    .venv/bin/python bench/suite_time.py [--baseline 160a9eb] [--skip-baseline]

- now: this checkout's `make test`, as CI runs it (lint and migrations check, then every test in
  parallel, `pytest -n auto`, each worker a database of its own on the run's private embedded
  PostgreSQL);
- baseline: the checkout at --baseline (160a9eb: the last commit before issue 14's work, whose
  suite took 5.5-6 minutes then), in a temporary git worktree that shares this checkout's
  virtualenv, run the way its `make test` ran it: the same lint and migrations check, then
  `pytest` in one process on the system PostgreSQL (BASELINE_DATABASE_URL).

Both run one after the other on the same machine, each timed from its start to its exit, so the
ratio is the figure to read (the machine's speed and load move both). Issue 14's goal: at most half
of the baseline. The last line, for scripts:

    suite: now N tests in S s; baseline M tests in B s; R x baseline
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = ROOT / ".venv" / "bin" / "python"
RUFF = ROOT / ".venv" / "bin" / "ruff"
BASELINE_DATABASE_URL = os.environ.get("BASELINE_DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/paygo")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/1")


def timed(commands: list[list[str]], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    """Run the commands one after the other (each must succeed); their wall-clock time and output."""
    began = time.perf_counter()
    output = []
    for command in commands:
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
        output.append(done.stdout + done.stderr)
        if done.returncode != 0:
            # From pytest's FAILURES section when there is one (why a test failed), else the tail.
            failures = output[-1].find("= FAILURES =")
            shown = output[-1][failures : failures + 20000] if failures >= 0 else output[-1][-3000:]
            sys.exit(f"{' '.join(command)} failed in {cwd}:\n{shown}")
    return time.perf_counter() - began, "".join(output)


def passed(output: str) -> int:
    found = re.findall(r"(\d+) passed", output)
    if not found:
        sys.exit(f"no test count in the output:\n{output[-3000:]}")
    return int(found[-1])


def run_now() -> tuple[float, int]:
    elapsed, output = timed([["make", "test"]], ROOT, dict(os.environ))
    return elapsed, passed(output)


def run_baseline(revision: str) -> tuple[float, int]:
    with tempfile.TemporaryDirectory(prefix="paygo-suite-baseline-") as folder:
        tree = Path(folder) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), revision], cwd=ROOT, check=True)
        try:
            (tree / ".venv").symlink_to(ROOT / ".venv")
            env = {**os.environ, "DEBUG": "1", "DATABASE_URL": BASELINE_DATABASE_URL, "REDIS_URL": REDIS_URL}
            env.pop("TEST_DATABASE_URL", None)
            elapsed, output = timed(
                [
                    [str(RUFF), "check", "."],
                    [str(RUFF), "format", "--check", "."],
                    [str(PY), "manage.py", "makemigrations", "--check", "--dry-run"],
                    [str(PY), "-m", "pytest"],
                ],
                tree,
                env,
            )
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
    return elapsed, passed(output)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", default="160a9eb", help="the revision whose suite is the baseline")
    parser.add_argument("--skip-baseline", action="store_true", help="time only `make test`")
    args = parser.parse_args()

    now, now_tests = run_now()
    print(f"make test (now):  {now_tests:,} tests in {now:7.1f} s ({now / 60:.1f} min)", flush=True)
    if args.skip_baseline:
        return
    baseline, baseline_tests = run_baseline(args.baseline)
    print(f"baseline ({args.baseline}): {baseline_tests:,} tests in {baseline:7.1f} s ({baseline / 60:.1f} min)")
    print(f"load average after: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    print(
        f"suite: now {now_tests} tests in {now:.1f} s; baseline {baseline_tests} tests in {baseline:.1f} s; "
        f"{now / baseline:.2f} x baseline"
    )


if __name__ == "__main__":
    main()
