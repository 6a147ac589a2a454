"""Many viewers at once: the Board opened by 1, 8 and 20 browser sessions together, and
live API-health tabs left open, against a real `partnerboard serve --no-collect`.

Starts the simulator (frozen clock), collects it once into a fresh DuckDB file
(`collect --once`), adds one person per session, starts `serve --no-collect` (so the
server's CPU is the pages', not the collectors') and drives Debian's Chromium through
Playwright:

- **Board**: for each crowd size N, N browser sessions (each signed in through the form
  first) open `/?period=2026-10` at the same moment; measured until every page finished
  (`[data-test-script-state=notRunning]` and the KPI tiles shown). ``--rounds`` per N (2): the
  first round may fill the query caches, the others are warm. The numbers are cached per
  minute, so a later round that would not fit in the rest of the minute waits for the next one
  and starts after one uncounted view has recomputed them. Printed: wall time until the last
  page finished, and the server process's CPU time (user + system, from /proc) per view.
- **Live API health**: K sessions keep `/api-health` open (it refreshes itself every 5 s)
  for ``--live-seconds``; printed: server CPU per refresh (minus the idle CPU of the same
  span with no tab open) and the server's RSS sampled every 10 s, to see it plateau.

    .venv/bin/python bench/bench_viewers.py                        # 1, 8, 20 sessions; 3 tabs, 120 s
    .venv/bin/python bench/bench_viewers.py --live-seconds 3600    # the hour-long soak
    .venv/bin/python bench/bench_viewers.py --scale 0.05 --data /tmp/b   # smoke run
    .venv/bin/python bench/bench_viewers.py --pin                  # server and browsers apart

``--pin`` gives the server CPU 0 and the browsers (this driver, Playwright, Chromium) the
other CPUs. In a deployment the viewers' browsers run on their own machines; here 20
Chromium pages render on the server's 2 cores, and the server's CPU time per view grows
with that contention (caches, context switches), not with its own work. Both figures are
worth knowing: unpinned is the worst case of this machine, pinned is closer to the server's.

Measured (scale 1, idle 2-core machine, 2026-12-04; the issue's starting point in brackets):
warm Board view 0.020-0.040 s of server CPU with 1 session, 0.026-0.031 s with 8 and
0.027-0.029 s with 20 at once, pinned; unpinned 0.029-0.030 s with 1 and 8, the 8 pages all
done in 7.6-8.7 s [0.5 s a view; 10-14 s for 8]. Live API health, 3 tabs: 0.023-0.024 s per
refresh [0.4 s], RSS 362 -> 362 MiB over 120 s. The hour-long soak of the same code (3 tabs,
2 160 refreshes, its first 40 minutes beside the test suite): 0.032 s per refresh, RSS 358 MiB
at the start, 364 MiB at minute 20 and 365 MiB from minute 40 to the end [326 -> 361 MiB in
19 minutes].
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "bench"))
from bench_sign_in import _port, _wait  # noqa: E402
from partnerboard.simulator.server import SECRET_ENV  # noqa: E402

from partnerboard.core.access import cli_user, users  # noqa: E402
from partnerboard.core.config import load_config  # noqa: E402
from partnerboard.core.store import close_store, open_store  # noqa: E402

PASSWORD = secrets.token_urlsafe(18)  # made up per run
FROZEN = "2026-11-20T12:00:00+00:00"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
READY = "[data-testid=stApp][data-test-script-state=notRunning]"
TICK = os.sysconf("SC_CLK_TCK")
# The Board's numbers are cached per minute (dashboard/queries.py REVIEW_TTL_S; importing the
# pages' module here would start a Streamlit cache outside a runtime).
REVIEW_TTL_S = 60


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _signed_in(browser, url: str, email: str):
    context = await browser.new_context(viewport={"width": 1400, "height": 1600})
    page = await context.new_page()
    await page.goto(f"{url}/signin")
    await page.fill("input[name=email]", email)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_selector(READY, timeout=120_000)
    return context, page


async def _open_board(page, url: str) -> None:
    await page.goto(f"{url}/?period=2026-10")
    await page.wait_for_selector(READY, timeout=300_000)
    await page.locator("[data-testid=stMetric]").first.wait_for(timeout=300_000)
    await page.wait_for_selector(READY, timeout=300_000)


async def _fit_in_a_minute(page, url: str, expected_wall: float, previous: float) -> float:
    """Start the next round where it can stay inside one cache minute.

    With the browsers on one core, 8 sessions take ~40 s of wall, so a round started at a
    random moment usually spans a minute's end and pays one recomputation of the numbers:
    then no round is warm. If the round (as long as the last one, + 10 %) would not fit in
    what is left of this minute, wait for the next minute, let one view outside the
    measurement recompute the numbers, and start the round after it. Returns the moment the
    uncounted view began (the round's warmth is judged from there), or `previous` if the
    round starts at once."""
    left = REVIEW_TTL_S - time.time() % REVIEW_TTL_S
    if expected_wall * 1.1 < left:
        return previous
    await asyncio.sleep(left + 0.05)  # the clock's minute, not a pause standing in for an event
    began = time.time()
    await _open_board(page, url)
    return began


async def drive(url: str, pid: int, people: list[str], crowds: list[int], tabs: int,
                live_s: float, rounds: int = 2) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        sessions = [await _signed_in(browser, url, email) for email in people[:max(crowds + [tabs])]]
        print(f"{len(sessions)} sessions signed in\n")
        print(f"{'sessions':>8} {'round':>6} {'wall until last page':>21} {'server CPU per view':>20}")
        previous = time.time()  # the sign-ins opened the Board too
        for n in crowds:
            last_wall = None
            for round_ in range(1, rounds + 1):
                if last_wall is not None:
                    previous = await _fit_in_a_minute(sessions[0][1], url, last_wall, previous)
                before, t0, began = cpu_s(pid), time.perf_counter(), time.time()
                await asyncio.gather(*(_open_board(page, url) for _, page in sessions[:n]))
                wall, cpu = time.perf_counter() - t0, cpu_s(pid) - before
                # The Board's numbers are cached per minute (queries.REVIEW_TTL_S): the first
                # view after a minute ends recomputes them, shared by the views after it. A
                # minute may end during one round and its first view come in the next, so a
                # round counts as warm only if no minute ended since the previous round began.
                crossed = int(previous // REVIEW_TTL_S) != int(time.time() // REVIEW_TTL_S)
                previous, last_wall = began, wall
                note = "  (a minute ended: may include one recomputation of the numbers)" if crossed else ""
                print(f"{n:8d} {round_:6d} {wall:20.2f}s {cpu / n:19.3f}s{note}")
        for context, _ in sessions:
            await context.close()
        if tabs <= 0 or live_s <= 0:
            await browser.close()
            return
        # Idle baseline: the server with no page open, for the same span.
        idle_span = min(live_s, 30.0)
        before = cpu_s(pid)
        await asyncio.sleep(idle_span)
        idle_per_s = (cpu_s(pid) - before) / idle_span
        live = [await _signed_in(browser, url, email) for email in people[:tabs]]
        for _, page in live:
            await page.goto(f"{url}/api-health")
            await page.wait_for_selector(READY, timeout=120_000)
        print(f"\nlive API health: {tabs} tabs for {live_s:.0f} s (idle server: {idle_per_s:.3f} s CPU/s)")
        before, t0, samples = cpu_s(pid), time.monotonic(), []
        while time.monotonic() - t0 < live_s:
            samples.append((time.monotonic() - t0, rss_mib(pid)))
            await asyncio.sleep(min(10.0, max(0.1, live_s - (time.monotonic() - t0))))
        span = time.monotonic() - t0
        used = cpu_s(pid) - before - idle_per_s * span
        refreshes = tabs * span / 5.0
        print(f"  server CPU per refresh {used / refreshes:.3f} s ({refreshes:.0f} refreshes, "
              f"{used / span * 60:.1f} s CPU a minute above idle)")
        shown = samples[:: max(1, len(samples) // 12)]
        print("  RSS over time: " + ", ".join(f"{t:.0f}s {m:.0f} MiB" for t, m in shown))
        print(f"  RSS first {samples[0][1]:.0f} MiB, last {rss_mib(pid):.0f} MiB")
        await browser.close()


def _pinning(pin: bool) -> tuple[set[int], set[int]]:
    """(server CPUs, browser CPUs) for ``--pin``; empty sets without it."""
    if not pin:
        return set(), set()
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit(f"--pin needs 2 or more CPUs; this process may use {cpus}")
    return {cpus[0]}, set(cpus[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", default="1,8,20", help="crowd sizes, e.g. 1,8,20")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds per crowd size (more: warm rounds that cross no minute)")
    parser.add_argument("--live-tabs", type=int, default=3)
    parser.add_argument("--live-seconds", type=float, default=120.0)
    parser.add_argument("--scale", type=float, default=1.0,
                        help="business volume of the simulator and the live span (0.05: smoke run)")
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--pin", action="store_true",
                        help="server on CPU 0, browsers on the others (needs 2 or more CPUs)")
    args = parser.parse_args()
    server_cpus, browser_cpus = _pinning(args.pin)
    crowds = [max(1, round(int(n) * min(1.0, args.scale * 4))) for n in args.sessions.split(",")]
    crowds = sorted(set(crowds))
    live_s = args.live_seconds * min(1.0, args.scale * 4)

    work = args.data or Path(tempfile.mkdtemp(prefix="pb-bench-viewers-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARTNERBOARD_")}
    env.update({name: secrets.token_hex(16) for name in SECRET_ENV.values()})
    env["PARTNERBOARD_SECRETS_FILE"] = "/nonexistent/secrets.toml"
    sim_port, port = _port(), _port()
    config = work / "partners.toml"
    text = (ROOT / "partners.toml").read_text().replace("127.0.0.1:8765", f"127.0.0.1:{sim_port}")
    config.write_text(text)
    (work / "viewers.duckdb").unlink(missing_ok=True)
    db = f"duckdb:///{work / 'viewers.duckdb'}"
    cli = [sys.executable, "-m", "partnerboard.cli"]
    sim = subprocess.Popen([*cli, "simulate", "--port", str(sim_port), "--now", FROZEN,
                            "--scale", str(min(1.0, args.scale * 4))],
                           env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    board = None
    try:
        _wait(f"http://127.0.0.1:{sim_port}/marketplace/health", sim, timeout=120)
        t = time.perf_counter()
        subprocess.run([*cli, "collect", "--once", "--config", str(config), "--database-url", db],
                       env=env, cwd=work, check=True, stdout=subprocess.DEVNULL)
        cfg = load_config(config)
        people = [f"viewer{i}@marketplace.example" for i in range(max(crowds + [args.live_tabs]))]
        with open_store(db).engine.begin() as conn:
            for email in people:
                users.add(conn, cfg, cli_user(), email, "viewer", partner_id="marketplace", password=PASSWORD)
        close_store(db)
        print(f"store collected in {time.perf_counter() - t:.0f} s")
        log = open(work / "serve.log", "w")  # noqa: SIM115 - closed with the process
        serve = [*cli, "serve", "--no-collect", "--config", str(config), "--database-url", db,
                 "--port", str(port)]
        if server_cpus:
            serve = ["taskset", "--cpu-list", ",".join(map(str, sorted(server_cpus))), *serve]
        board = subprocess.Popen(serve, env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        _wait(f"{url}/signin", board, timeout=120)
        if browser_cpus:  # Playwright's driver and Chromium inherit this process's CPUs
            os.sched_setaffinity(0, browser_cpus)
            print(f"pinned: server on CPU {sorted(server_cpus)}, browsers on CPUs {sorted(browser_cpus)}")
        asyncio.run(drive(url, board.pid, people, crowds, args.live_tabs, live_s, args.rounds))
    finally:
        for proc in (board, sim):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(30)


if __name__ == "__main__":
    main()
