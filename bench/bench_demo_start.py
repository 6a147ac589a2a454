"""The demo from a fresh store, as a newcomer meets it: how long until the board answers,
until the Board shows orders, and until the whole history is in (the business sources'
first loads and the simulated probe history), optionally with busy loops beside it; or how
much a kill keeps.

Runs `partnerboard demo` on a new DuckDB file and a simulator port of its own (a copy of
partners.toml pointed there), and Debian's Chromium through Playwright: signed in as the
demo admin, the Board (its default period, the last complete month) is reloaded until its
*Orders* tile shows a number. The full history is judged from /healthz (every first load
done) and the demo's log (each partner's probe history imported).

    .venv/bin/python bench/bench_demo_start.py                    # idle machine
    .venv/bin/python bench/bench_demo_start.py --busy 2           # two busy loops beside it
    .venv/bin/python bench/bench_demo_start.py --kill-after 60    # SIGKILL 60 s after it answers
    .venv/bin/python bench/bench_demo_start.py --until orders --data /tmp/d   # smoke (CI)

Measured: see README (Quick start) and the closing note of issue 35.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from bench_sign_in import _port  # noqa: E402

PASSWORD = "bench-demo-" + os.urandom(6).hex()
READY = "[data-testid=stApp][data-test-script-state=notRunning]"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _busy(n: int) -> list[subprocess.Popen]:
    """``n`` processes spinning a core each: the "machine doing other work"."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def _config(data: Path, sim_port: int) -> Path:
    path = data / "partners.toml"
    path.write_text((ROOT / "partners.toml").read_text().replace("127.0.0.1:8765", f"127.0.0.1:{sim_port}"))
    return path


async def _orders_shown(url: str, started: float, timeout: float) -> float:
    """Seconds from ``started`` until the signed-in Board shows a number on its Orders tile."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = await (await browser.new_context(viewport={"width": 1400, "height": 1800})).new_page()
        await page.goto(f"{url}/signin")
        await page.fill("input[name=email]", "demo@partnership.example")
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_selector(READY, timeout=180_000)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await page.goto(f"{url}/")
            await page.wait_for_selector(READY, timeout=180_000)
            tile = page.locator("[data-testid=stMetric]", has_text="Orders").first
            if await tile.count():
                value = (await tile.locator("[data-testid=stMetricValue]").inner_text()).strip()
                if re.match(r"^[1-9][\d,\s]*$", value):
                    await browser.close()
                    return time.monotonic() - started
            await asyncio.sleep(2)
        await browser.close()
    raise SystemExit(f"the Board showed no orders within {timeout:g} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--busy", type=int, default=0, help="busy loops beside the demo (default 0)")
    parser.add_argument("--until", choices=("orders", "history"), default="history",
                        help="stop once orders show (smoke), or once the whole history is in")
    parser.add_argument("--kill-after", type=float, default=None,
                        help="SIGKILL the demo this many seconds after it answers, then count what it kept")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    parser.add_argument("--data", type=Path, default=None, help="working directory (default: a new temp dir)")
    args = parser.parse_args()

    data = args.data or Path(tempfile.mkdtemp(prefix="bench-demo-"))
    data.mkdir(parents=True, exist_ok=True)
    db = data / "demo.duckdb"
    for leftover in (db, Path(f"{db}.wal"), Path(f"{db}.owner")):
        leftover.unlink(missing_ok=True)
    port, sim_port = _port(), _port()
    url = f"http://127.0.0.1:{port}"
    log_path = data / "demo.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARTNERBOARD_")}
    env["PARTNERBOARD_DEMO_PASSWORD"] = PASSWORD
    busy = _busy(args.busy)
    started = time.monotonic()
    with log_path.open("w") as log:
        demo = subprocess.Popen(
            [str(ROOT / ".venv/bin/partnerboard"), "demo", "--port", str(port), "--sim-port", str(sim_port),
             "--config", str(_config(data, sim_port)), "--database-url", f"duckdb:///{db}"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=data, start_new_session=True)
    try:
        import httpx

        while True:
            if demo.poll() is not None:
                raise SystemExit(f"the demo exited with {demo.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() - started > args.timeout:
                raise SystemExit("the board did not answer")
            time.sleep(0.2)
        answered = time.monotonic() - started
        print(f"busy loops: {args.busy}; the board answered {answered:.1f} s after `partnerboard demo` "
              "started", flush=True)
        if args.kill_after is not None:
            time.sleep(args.kill_after)  # the moment of the kill is the measurement, not a wait for an event
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
            _count_kept(db, args.kill_after)
            return
        shown = asyncio.run(_orders_shown(url, started, args.timeout))
        print(f"orders on the Board {shown - answered:.1f} s after the board answered ({shown:.1f} s after "
              "start)", flush=True)
        if args.until == "orders":
            return
        business = probes = None
        while time.monotonic() - started < args.timeout and (business is None or probes is None):
            text = log_path.read_text()
            loads = re.findall(r"first load source=(\S+) window=\d+ .* done$", text, re.M)
            if business is None and len(set(loads)) >= 4:  # the four windowed sources of the demo
                business = time.monotonic() - started
                print(f"business history in (every first load done) {business:.1f} s after start", flush=True)
            if probes is None and text.count("simulated probe history imported partner=") >= 2:
                probes = time.monotonic() - started
                print(f"probe history in {probes:.1f} s after start", flush=True)
            time.sleep(1)
        if business is None or probes is None:
            raise SystemExit(f"the history was not in within {args.timeout:g} s")
        print(f"whole history in {max(business, probes):.1f} s after start", flush=True)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGTERM)
            try:
                demo.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(demo.pid, signal.SIGKILL)
        for p in busy:
            p.kill()


def _count_kept(db: Path, after: float) -> None:
    """What the store holds after the kill: the windows committed before it."""
    sys.path.insert(0, str(ROOT))
    import sqlalchemy as sa

    from partnerboard.core.store import close_store, open_store, schema

    url = f"duckdb:///{db}"
    store = open_store(url)
    with store.engine.connect() as conn:
        orders = conn.execute(sa.select(sa.func.count()).select_from(schema.orders)).scalar()
        payments = conn.execute(sa.select(sa.func.count()).select_from(schema.payments)).scalar()
        probes = conn.execute(sa.select(sa.func.count()).select_from(schema.probe_results)).scalar()
    close_store(url)
    print(f"killed {after:g} s after the board answered: the store kept {orders:,} orders, {payments:,} "
          f"payments and {probes:,} probes", flush=True)


if __name__ == "__main__":
    main()
