"""Live-cost sockets under load: N clients of /ws/streams/<sessionId>/, their ticks counted.

    python bench/load/sockets.py --url ws://HOST:PORT --targets FILE --seconds S [--open-at-once]
                                 --json OUT [--processes P] [--ramp 20]

FILE holds one JSON object a line, {"token": "<access JWT>", "sessionId": "<session id>"}: one
socket each (the token goes as the `bearer.<jwt>` subprotocol, as the README advises).

Sockets open `--ramp` at a time (20, as issue 16 measured), or all at once with --open-at-once
(clients reconnecting after a deploy). Once every socket is open (or has failed), the ticks of the
next S seconds are counted. OUT gets, and stdout shows:

- sockets, connected (handshake done, not refused), failed (never connected, or refused with 44xx)
  and dropped (closed during the measurement);
- ticks_per_socket_per_s: `cost.tick` messages received in the window per socket (of all sockets,
  failed ones counting 0) per second;
- tick_delay_p50_ms / tick_delay_p99_ms: from a tick's `at` (when the server computed it) to its
  arrival here (same machine, same clock);
- max_gap_s: the longest time a connected socket went without a tick in the window;
- connect_all_s: from the first handshake sent to the last one done;
- failures (extra): why handshakes failed (the error, and the HTTP status), counted;
- client_lag_p99_ms (extra): how late this client's own event loops woke up, so that a client too
  busy to read is not mistaken for a slow server (several processes share the sockets: --processes,
  by default one per 500 sockets).

It needs only aiohttp (no Django; installed with the requirements, twilio depends on it): the load
test runs it beside the server it loads.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import statistics
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime

import aiohttp

CONNECT_TIMEOUT_S = 30.0
LAG_PROBE_S = 0.1


@dataclass
class Part:
    """What one client process saw."""

    sockets: int = 0
    connected: int = 0
    failed: int = 0
    dropped: int = 0
    ticks: int = 0
    delays_ms: list[float] = field(default_factory=list)
    max_gap_s: float = 0.0
    first_sent: float = math.inf
    last_connected: float = 0.0
    lag_ms: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)  # why handshakes failed, counted


async def _lag_probe(part: Part, until: float) -> None:
    while time.time() < until:
        began = time.perf_counter()
        await asyncio.sleep(LAG_PROBE_S)
        part.lag_ms.append((time.perf_counter() - began - LAG_PROBE_S) * 1000)


class Socket:
    def __init__(self, target: dict, part: Part) -> None:
        self.target = target
        self.part = part
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.refused = False
        self.closed_early = False
        self.last_tick: float | None = None

    async def open(self, http: aiohttp.ClientSession, url: str) -> bool:
        self.part.first_sent = min(self.part.first_sent, time.time())
        try:
            self.ws = await http.ws_connect(
                f"{url}/ws/streams/{self.target['sessionId']}/",
                protocols=[f"bearer.{self.target['token']}"],
                autoping=True,
                timeout=aiohttp.ClientWSTimeout(ws_close=5),
            )
        except (TimeoutError, aiohttp.ClientError, OSError) as error:
            reason = f"{type(error).__name__} {getattr(error, 'status', '')}".strip()
            self.part.failures[reason] = self.part.failures.get(reason, 0) + 1
            return False
        self.part.last_connected = max(self.part.last_connected, time.time())
        return True

    async def read(self, window: tuple[float, float]) -> None:
        start, end = window
        assert self.ws is not None
        async for message in self.ws:
            now = time.time()
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(message.data)
            if data.get("type") != "cost.tick" or not start <= now <= end:
                continue
            self.part.ticks += 1
            self.part.delays_ms.append((now - datetime.fromisoformat(data["at"]).timestamp()) * 1000)
            self.part.max_gap_s = max(self.part.max_gap_s, now - (self.last_tick or start))
            self.last_tick = now
        code = self.ws.close_code
        if code and code >= 4400:
            self.refused = True
        elif time.time() < end:
            self.closed_early = True


async def _run_part(url: str, targets: list[dict], at_once: bool, ramp: int, ready, go, seconds: float) -> Part:
    part = Part(sockets=len(targets))
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT_S, sock_connect=CONNECT_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        sockets = [Socket(target, part) for target in targets]
        gate = asyncio.Semaphore(len(targets) if at_once else max(1, ramp))

        async def open_one(socket: Socket) -> bool:
            async with gate:
                return await socket.open(http, url)

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, go["open"].wait)  # every process opens at the same moment
        opened = await asyncio.gather(*(open_one(socket) for socket in sockets))
        ready.put(1)
        await loop.run_in_executor(None, go["measure"].wait)
        start = go["t0"].value
        end = start + seconds
        live = [socket for socket, ok in zip(sockets, opened, strict=True) if ok]
        readers = [asyncio.create_task(socket.read((start, end))) for socket in live]
        probe = asyncio.create_task(_lag_probe(part, end))
        await asyncio.sleep(max(0.0, end - time.time()))
        await probe
        for socket in live:
            if socket.last_tick is not None:
                part.max_gap_s = max(part.max_gap_s, end - socket.last_tick)
            elif not socket.refused:
                part.max_gap_s = max(part.max_gap_s, seconds)
        await asyncio.gather(*(socket.ws.close() for socket in live), return_exceptions=True)
        await asyncio.gather(*readers, return_exceptions=True)
        for socket, ok in zip(sockets, opened, strict=True):
            if not ok or socket.refused:
                part.failed += 1
            else:
                part.connected += 1
                part.dropped += socket.closed_early
    return part


def _worker(url, targets, at_once, ramp, ready, go, seconds, results) -> None:
    part = asyncio.run(_run_part(url, targets, at_once, ramp, ready, go, seconds))
    results.put(asdict(part))


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 1)


def run(url: str, targets: list[dict], seconds: float, *, at_once: bool, processes: int, ramp: int = 20) -> dict:
    processes = max(1, min(processes, len(targets)))
    ctx = multiprocessing.get_context("spawn")
    ready, results = ctx.Queue(), ctx.Queue()
    go = {"open": ctx.Event(), "measure": ctx.Event(), "t0": ctx.Value("d", 0.0)}
    workers = [
        ctx.Process(
            target=_worker,
            args=(url, targets[i::processes], at_once, max(1, ramp // processes), ready, go, seconds, results),
        )
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    time.sleep(1.0)  # let every process start its interpreter before the handshakes begin
    go["open"].set()
    for _ in workers:
        ready.get()
    go["t0"].value = time.time() + 1.0  # a second for the last sockets' first ticks to arrive
    go["measure"].set()
    parts = [Part(**results.get()) for _ in workers]
    for worker in workers:
        worker.join()
    delays = [d for part in parts for d in part.delays_ms]
    lags = [lag for part in parts for lag in part.lag_ms]
    connected = sum(part.connected for part in parts)
    return {
        "sockets": len(targets),
        "connected": connected,
        "failed": sum(part.failed for part in parts),
        "dropped": sum(part.dropped for part in parts),
        "ticks_per_socket_per_s": round(sum(part.ticks for part in parts) / len(targets) / seconds, 3),
        "tick_delay_p50_ms": _percentile(delays, 50),
        "tick_delay_p99_ms": _percentile(delays, 99),
        "max_gap_s": round(max(part.max_gap_s for part in parts), 2),
        "connect_all_s": round(max(part.last_connected for part in parts) - min(part.first_sent for part in parts), 2)
        if connected
        else None,
        "client_lag_p99_ms": _percentile(lags, 99),
        "client_processes": processes,
        "failures": {
            reason: sum(part.failures.get(reason, 0) for part in parts)
            for reason in sorted({reason for part in parts for reason in part.failures})
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="ws://HOST:PORT")
    parser.add_argument("--targets", required=True, help="JSON lines: {token, sessionId}")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--open-at-once", action="store_true")
    parser.add_argument("--json", dest="out", help="write the figures here too")
    parser.add_argument("--processes", type=int, default=0, help="client processes (default: one per 500 sockets)")
    parser.add_argument("--ramp", type=int, default=20, help="sockets opening at a time without --open-at-once")
    args = parser.parse_args()
    with open(args.targets) as lines:
        targets = [json.loads(line) for line in lines if line.strip()]
    processes = args.processes or math.ceil(len(targets) / 500)
    url = args.url.rstrip("/")
    figures = run(url, targets, args.seconds, at_once=args.open_at_once, processes=processes, ramp=args.ramp)
    if args.out:
        with open(args.out, "w") as out:
            json.dump(figures, out)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
