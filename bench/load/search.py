"""The highest rate this machine sustains under the load test's mix (issue 16), found by stepping it up.

    .venv/bin/python bench/load/search.py [--start 30] [--step 30] [--seconds 120] [--sockets 200]
                                          [--p95-ms 500] [--then 600]

Runs bench/load/run.py (the production shape, its data, the Locust mix, live sockets) for
`--seconds` at `--start` simulated people, then `--step` more each time, until a step is not
sustained, and prints one line per step. A step is **sustained** when:

- no request failed (no non-2xx answer) and no socket failed or dropped;
- every socket got at least 0.95 ticks a second;
- PostgreSQL never held more connections than the pools' total;
- the p95 of all requests stayed under `--p95-ms`: past that, requests queue behind each other;
- the throughput kept up with the people: at least 90% of what the first step's rate per person
  gives for this many (a person waits 0.5-1.5 s between requests, so the rate falls behind the
  people only when answers slow down: the machine is saturated).

The highest sustained step is the rate reported; with `--then S` the load test runs for S seconds
at it (the issue: 10 minutes at the highest rate, 0 errors) and its figures are printed as run.py
prints them. The last line is JSON: every step's figures and the verdict.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def run(users: int, seconds: int, sockets: int) -> dict:
    """run.py at `users` people for `seconds`; its figures (its last line)."""
    command = [sys.executable, str(HERE / "run.py"), "--users", str(users), "--seconds", str(seconds)]
    command += ["--sockets", str(sockets), "--spawn-rate", str(max(5, users // 10))]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise SystemExit(f"run.py failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    print("\n".join(lines[:-1]), flush=True)
    return json.loads(lines[-1])


def shortfalls(figures: dict, *, p95_ms: float, per_person: float | None) -> list[str]:
    """Why a step is not sustained (nothing when it is)."""
    why = []
    if figures["failures"]:
        why.append(f"{figures['failures']} failed requests")
    sockets = figures.get("sockets") or {}
    if sockets:
        if sockets.get("failed") or sockets.get("dropped"):
            why.append(f"sockets failed {sockets.get('failed')}, dropped {sockets.get('dropped')}")
        if sockets.get("ticks_per_socket_per_s", 0) < 0.95:
            why.append(f"{sockets.get('ticks_per_socket_per_s')} ticks a socket a second")
    if figures["db_connections_max"] > figures["pools_total"]:
        why.append(f"{figures['db_connections_max']} connections > pools' {figures['pools_total']}")
    if figures["p95_ms"] >= p95_ms:
        why.append(f"p95 {figures['p95_ms']:.0f} ms >= {p95_ms:.0f}")
    if per_person is not None and figures["rps"] < 0.9 * per_person * figures["users"]:
        why.append(f"{figures['rps']:.1f} req/s < 90% of {per_person * figures['users']:.1f}")
    return why


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--start", type=int, default=30)
    parser.add_argument("--step", type=int, default=30)
    parser.add_argument("--most", type=int, default=600, help="stop stepping here")
    parser.add_argument("--seconds", type=int, default=120, help="each step's length")
    parser.add_argument("--sockets", type=int, default=200)
    parser.add_argument("--p95-ms", type=float, default=500)
    parser.add_argument("--then", type=int, default=0, help="then run this long at the highest sustained step")
    options = parser.parse_args()

    steps, per_person, best = [], None, None
    for users in range(options.start, options.most + 1, options.step):
        print(f"\n== {users} people for {options.seconds} s", flush=True)
        figures = run(users, options.seconds, options.sockets)
        why = shortfalls(figures, p95_ms=options.p95_ms, per_person=per_person)
        per_person = per_person or figures["rps"] / users
        steps.append({"users": users, "sustained": not why, "why": why, **figures})
        print(
            f"== {users} people: {figures['rps']:.1f} req/s, p95 {figures['p95_ms']:.0f} ms: "
            + ("sustained" if not why else "NOT sustained (" + "; ".join(why) + ")"),
            flush=True,
        )
        if why:
            break
        best = users

    head = ("people", 6), ("req/s", 7), ("p50", 5), ("p95", 6), ("p99", 6), ("fail", 5), ("conns", 6), ("ticks/s", 8)
    print("\n" + " ".join(f"{name:>{width}}" for name, width in head) + "  verdict")
    for step in steps:
        ticks = (step.get("sockets") or {}).get("ticks_per_socket_per_s", "-")
        print(
            f"{step['users']:>6} {step['rps']:>7.1f} {step['p50_ms']:>5.0f} {step['p95_ms']:>6.0f}"
            f" {step['p99_ms']:>6.0f}"
            f" {step['failures']:>5} {step['db_connections_max']:>3}/{step['pools_total']:<2} {ticks!s:>8}  "
            + ("sustained" if step["sustained"] else "; ".join(step["why"]))
        )
    print(f"highest sustained: {best} people" if best else "highest sustained: none (the first step failed)")
    final = None
    if best and options.then:
        print(f"\n== {best} people for {options.then} s", flush=True)
        final = run(best, options.then, options.sockets)
        why = shortfalls(final, p95_ms=options.p95_ms, per_person=per_person)
        print(f"== {best} people for {options.then} s: " + ("sustained" if not why else "; ".join(why)), flush=True)
    print(json.dumps({"highest_sustained_users": best, "steps": steps, "final": final}))


if __name__ == "__main__":
    main()
