#!/usr/bin/python3
# SPDX-License-Identifier: MPL-2.0
"""example.market_data: market-data.toml run end to end through `zmesh up`.

Starts the topology with `zmesh up FILE --state PATH --run-dir DIR`, reads the processes from the
state file, waits for the feed and every strategy to finish, stops `zmesh up` with SIGINT, and
checks:
  - the late strategy's first quote of every instrument equals the feed's latest quote of it at
    the halt (every field, and the sequence number), and came from the last-value cache;
  - the slow strategy was told that it fell behind: a gap ("N messages lost on md.quote.X") or its
    lag limit; each time it gave up on the limit (exit 3), zmesh up restarted it and it resumed
    from the book in the last-value cache;
  - the gateway answered every order the strategies sent;
  - every strategy printed its latency percentiles (p50 <= p99 <= p99.9);
  - no other node was restarted, every one that finishes ended with status 0, and no process is
    left once `zmesh up` has exited, even when a check fails (zmesh up runs in a session of its
    own, which is searched and killed at the end).
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

FINITE = ["feed", "strategy.1", "strategy.2", "slow", "late"]
STRATEGIES = ["strategy.1", "strategy.2", "slow", "late"]


def fail(message):
    raise AssertionError(message)


def read_state(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None  # not written yet (it is replaced atomically, so never half-written)


def session_processes(sid):
    """Pids of the live processes in session @sid (zmesh up and everything it started)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        # fields[0] is the state, fields[3] the session id; a zombie is gone but for its parent.
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(entry))
    return found


def read_table(path, columns):
    """Lines of a space-separated file, comments skipped: {symbol: [fields...]}."""
    rows = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            parts = line.split()
            if len(parts) != columns:
                fail(f"{path}: malformed line {line!r}")
            rows[parts[0]] = parts[1:]
    return rows


def check(log, run_dir, state):
    lines = log.splitlines()

    # --- the late strategy's first values are the feed's latest, every instrument, exactly ---
    latest_path = os.path.join(run_dir, "feed-latest.txt")
    first_path = os.path.join(run_dir, "late-first.txt")
    for p in (latest_path, first_path):
        if not os.path.exists(p):
            fail(f"{p} was not written")
    latest = read_table(latest_path, 7)  # symbol sequence bid ask last bid_size ask_size
    first = read_table(first_path, 10)   # ... from_snapshot published_ns received_ns
    if len(latest) != 300:
        fail(f"the feed wrote {len(latest)} instruments at the halt, not 300")
    if set(first) != set(latest):
        fail(f"the late strategy saw {len(first)} instruments; missing "
             f"{sorted(set(latest) - set(first))[:5]}, unexpected {sorted(set(first) - set(latest))[:5]}")
    resumed = re.search(r"resumed at (\d+)", log)
    mismatches = []
    for symbol, want in latest.items():
        got = first[symbol]
        if got[:6] != want or got[6] != "1":
            mismatches.append((symbol, want, got))
    if mismatches:
        symbol, want, got = mismatches[0]
        why = ""
        if resumed and int(got[8]) > int(resumed.group(1)):
            why = " (the late strategy got it after the feed resumed: MD_HALT_MS too short?)"
        fail(f"{len(mismatches)} of {len(latest)} first values differ from the feed's latest; "
             f"{symbol}: feed sequence,bid,ask,last,sizes {want}, late {got[:6]} "
             f"from_snapshot={got[6]}{why}")
    print(f"ok: the late strategy's first quote of each of {len(latest)} instruments equals the "
          f"feed's latest (sequence and every field), from the last-value cache")
    if not re.search(r"late joined late: the book of 300 instruments from the last-value cache",
                     log):
        fail("the late strategy did not say it joined with the book of 300 instruments")

    # --- the slow strategy was told it fell behind, and came back from the cache ---
    told = [m.group(0) for m in (re.search(r"slow fell behind: (?:\d+ messages lost on md\.quote\.\w+|"
                                           r"subscriber fell \d+ ms behind.*)", l) for l in lines) if m]
    if not told:
        fail("the slow strategy was never told that it fell behind (neither a gap, 'slow fell "
             "behind: N messages lost on md.quote.X', nor its lag limit)")
    print(f"ok: the slow strategy was told it fell behind: {told[0]}")
    slow = next(n for n in state["nodes"] if n["name"] == "slow")
    gave_up = [l for l in lines if re.search(r"slow fell behind: subscriber fell \d+ ms behind", l)]
    if gave_up:
        if slow["restarts"] != len(gave_up):
            fail(f"the slow strategy gave up {len(gave_up)} times but was restarted {slow['restarts']} times")
        if not re.search(r"slow exited with status 3", log):
            fail("zmesh up did not report the slow strategy's exit status 3")
        if not re.search(r"slow joined late: the book of 300 instruments from the last-value cache", log):
            fail("the restarted slow strategy did not resume from the book in the last-value cache")
        print(f"ok: the slow strategy gave up {len(gave_up)} times on its lag limit; zmesh up "
              f"restarted it and it resumed from the last-value cache")
    for name in ["strategy.1", "strategy.2"]:
        if re.search(rf"{re.escape(name)} fell behind", log):
            print(f"note: {name} lost quotes too (a loaded machine)")

    # --- orders: every one sent was answered, and the gateway saw them all ---
    sent_total = 0
    for name in STRATEGIES:
        lives = re.findall(rf"{re.escape(name)}: (\d+) quotes \((\d+) from the snapshot\), (\d+) "
                           rf"gaps, (\d+) lost; orders: (\d+) sent, (\d+) answered", log)
        if not lives:
            fail(f"{name} printed no summary line")
        if name != "slow" and len(lives) != 1:
            fail(f"{name} printed {len(lives)} summary lines, not 1")
        sent = sum(int(life[4]) for life in lives)
        answered = sum(int(life[5]) for life in lives)
        if sent != answered:
            fail(f"{name} sent {sent} orders but got {answered} answers")
        if name == "late" and int(lives[0][1]) != 300:
            fail(f"the late strategy's snapshot held {lives[0][1]} quotes, not 300")
        sent_total += sent
    filled = re.findall(r"gateway: GW-\d+ \S+ (?:BUY|SELL) \d+ \w+ @ [\d.]+ -> filled", log)
    if sent_total == 0:
        fail("no strategy sent an order")
    if len(filled) != sent_total:
        fail(f"the gateway filled {len(filled)} orders, the strategies sent {sent_total}")
    gw = re.search(r"gateway: (\d+) orders answered", log)
    if not gw or int(gw.group(1)) != sent_total:
        fail(f"the gateway's summary says {gw.group(1) if gw else 'nothing'}, the strategies sent "
             f"{sent_total}")
    print(f"ok: {sent_total} orders sent to the gateway, every one answered (filled)")

    # --- latency percentiles ---
    for name in STRATEGIES:
        m = re.search(rf"{re.escape(name)} latency over (\d+) live quotes: p50 (\d+) us, "
                      rf"p99 (\d+) us, p99\.9 (\d+) us", log)
        if not m:
            fail(f"{name} printed no latency line")
        count, p50, p99, p999 = (int(g) for g in m.groups())
        if count <= 0 or not p50 <= p99 <= p999:
            fail(f"{name}'s latency line is inconsistent: {m.group(0)}")
        print(f"ok: {m.group(0)}")

    # --- nothing else restarted; every finite node ended with status 0 ---
    for node in state["nodes"]:
        if node["name"] != "slow" and node["restarts"] != 0:
            fail(f"{node['name']} was restarted {node['restarts']} times")
        if node["name"] in FINITE and node.get("exit_status") not in (0, None):
            fail(f"{node['name']} exited with status {node['exit_status']}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--zmesh", required=True)
    parser.add_argument("--bin", required=True)
    parser.add_argument("--topology", required=True)
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()

    scratch = tempfile.mkdtemp(prefix="zmesh-market-data-")
    run_dir = os.path.join(scratch, "run")
    state_path = os.path.join(scratch, "state.json")
    log_path = os.path.join(scratch, "up.log")
    env = dict(os.environ)
    env["PATH"] = os.path.abspath(args.bin) + os.pathsep + env.get("PATH", "")
    env.setdefault("MD_HALT_MS", "4000")  # the late strategy joins well within it, even under ASan
    env["NO_COLOR"] = "1"

    print(f"scratch directory {scratch}")
    with open(log_path, "w", encoding="utf-8") as log_file:
        up = subprocess.Popen(
            [args.zmesh, "up", args.topology, "--state", state_path, "--run-dir", run_dir,
             "--no-color"],
            stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    state = None
    failure = None
    try:
        deadline = time.monotonic() + 90
        while True:
            if up.poll() is not None:
                fail(f"zmesh up exited early with status {up.returncode}")
            state = read_state(state_path) or state
            if state:
                nodes = {n["name"]: n for n in state["nodes"]}
                for n in state["nodes"]:
                    # The slow strategy may give up and be restarted (exit 3), a few times.
                    if n["restarts"] > (10 if n["name"] == "slow" else 0):
                        fail(f"{n['name']} was restarted {n['restarts']} times "
                             f"(last exit status {n.get('exit_status')})")
                for name in FINITE:
                    n = nodes.get(name)
                    if name != "slow" and n and n["state"] == "exited" \
                            and n.get("exit_status") not in (0, None):
                        fail(f"{name} exited with status {n['exit_status']}")
                if all(nodes.get(n, {}).get("state") in ("exited", "stopped")
                       and nodes[n].get("exit_status") in (0, None) for n in FINITE):
                    break
            if time.monotonic() > deadline:
                fail("the feed and the strategies did not all finish within 90 s; state: "
                     + json.dumps(state))
            time.sleep(0.2)

        up.send_signal(signal.SIGINT)
        try:
            status = up.wait(timeout=30)
        except subprocess.TimeoutExpired:
            fail("zmesh up did not exit within 30 s of SIGINT")
        if status != 0:
            fail(f"zmesh up exited with status {status} after SIGINT")
        left = session_processes(up.pid)
        if left:
            fail(f"processes left after zmesh up exited: {left}")
        state = read_state(state_path) or state
        with open(log_path, encoding="utf-8", errors="replace") as f:
            log = f.read()
        check(log, run_dir, state)
        print("ok: zmesh up stopped on SIGINT with status 0 and left no process")
    except AssertionError as e:
        failure = str(e)
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            try:
                up.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        for pid in session_processes(up.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if up.poll() is None:
            up.wait(timeout=5)

    if failure:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            log = f.read()
        print("---- zmesh up output (last 150 lines) ----")
        print("\n".join(log.splitlines()[-150:]))
        print("----")
        print(f"FAIL: {failure}")
        print(f"(scratch directory kept: {scratch})")
        return 1
    if not args.keep:
        subprocess.run(["rm", "-rf", scratch], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
