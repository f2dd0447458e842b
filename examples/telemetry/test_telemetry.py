#!/usr/bin/python3
# SPDX-License-Identifier: MPL-2.0
"""example.telemetry: the telemetry example, end to end, started with `zmesh up`.

Starts telemetry.toml with `zmesh up FILE --state PATH --run-dir DIR`, reads the nodes' pids
from the state file, waits until every sensor has exited (each sends a fixed number of
readings), then checks:

  - every sensor exited 0 and wrote its totals (count and sum per metric of what it sent);
  - the totals the aggregator stored in SQLite equal them exactly, per sensor and metric
    (count and sum), with no sensor missing or extra, and the aggregator counted no gap;
  - the `zmesh sub` tail printed readings.

At the end (also when a check fails) it sends SIGINT to `zmesh up`, expects it to exit 0, and
checks that no process of the topology is left; any that is gets SIGKILL and fails the test.
"""

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

SENSORS = 8           # count of [node.sensor] in telemetry.toml
SAMPLES = 60          # readings of each metric per sensor (TELEMETRY_SAMPLES)
INTERVAL_MS = 50      # TELEMETRY_INTERVAL_MS: each sensor runs about 3 s
METRICS = 3


class Failure(Exception):
    pass


def read_state(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None  # not written yet (it is replaced atomically, so never half-written)


def alive(pid):
    """Whether pid is a live process (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--zmesh", required=True)
    ap.add_argument("--bin", required=True, help="examples/bin of the build tree")
    ap.add_argument("--topology", required=True)
    ap.add_argument("--timeout", type=float, default=90.0,
                    help="seconds for the whole run before giving up")
    args = ap.parse_args()
    # Nodes run in the topology's directory: relative paths would not hold there.
    args.zmesh, args.bin, args.topology = (os.path.abspath(p) for p in
                                           (args.zmesh, args.bin, args.topology))

    work = tempfile.mkdtemp(prefix="zmesh-example-telemetry-")
    run_dir = os.path.join(work, "run")
    state_path = os.path.join(work, "state.json")
    env = dict(os.environ)
    env["PATH"] = args.bin + os.pathsep + env.get("PATH", "")
    env["TELEMETRY_SAMPLES"] = str(SAMPLES)
    env["TELEMETRY_INTERVAL_MS"] = str(INTERVAL_MS)
    env["NO_COLOR"] = "1"

    cmd = [args.zmesh, "up", args.topology, "--state", state_path, "--run-dir", run_dir,
           "--no-color"]
    print("starting:", " ".join(cmd), flush=True)
    up = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL, start_new_session=True)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(
        l.decode(errors="replace").rstrip("\n") for l in up.stdout), daemon=True)
    reader.start()
    pids = {}  # every pid the state file ever named, by node name
    deadline = time.monotonic() + args.timeout

    def poll_state():
        st = read_state(state_path)
        if st:
            for n in st.get("nodes", []):
                if n.get("pid"):
                    pids.setdefault(n["name"], set()).add(n["pid"])
        return st

    failed = None
    try:
        # 1. Every sensor has run to its end.
        while True:
            if up.poll() is not None:
                raise Failure(f"zmesh up exited early with status {up.returncode}")
            st = poll_state()
            crashed = [f"{n['name']} ({n['restarts']} restarts, last status "
                       f"{n.get('exit_status')})"
                       for n in (st or {}).get("nodes", []) if n.get("restarts")]
            if crashed:
                raise Failure("nodes crashed and were restarted: " + ", ".join(crashed))
            sensors = [n for n in (st or {}).get("nodes", []) if n["name"].startswith("sensor.")]
            if len(sensors) == SENSORS and all(n["state"] in ("exited", "stopped")
                                               for n in sensors):
                break
            if time.monotonic() > deadline:
                raise Failure("the sensors did not all finish in time; state: " +
                              json.dumps(st))
            time.sleep(0.2)
        bad = [n for n in sensors if n.get("exit_status") != 0]
        if bad:
            raise Failure("sensors that did not exit 0: " +
                          ", ".join(f"{n['name']} ({n.get('exit_status')})" for n in bad))
        print(f"all {SENSORS} sensors exited 0", flush=True)

        # 2. What each sensor says it sent.
        sent = {}
        for i in range(1, SENSORS + 1):
            name = f"sensor.{i}"
            path = os.path.join(run_dir, f"{name}.totals.json")
            try:
                with open(path) as f:
                    t = json.load(f)
            except (OSError, json.JSONDecodeError) as e:
                raise Failure(f"{name} wrote no readable totals file {path}: {e}")
            if t["sensor"] != name or not t["complete"]:
                raise Failure(f"{path}: not the complete totals of {name}: {t}")
            for metric, v in t["metrics"].items():
                if v["count"] != SAMPLES:
                    raise Failure(f"{name} says it sent {v['count']} {metric} readings, "
                                  f"not {SAMPLES}")
                sent[(name, metric)] = (v["count"], float(v["sum"]))
        if len(sent) != SENSORS * METRICS:
            raise Failure(f"expected {SENSORS * METRICS} sensor/metric totals, got {len(sent)}")

        # 3. The aggregator has stored every sensor's readings: it marks a sensor finished once
        #    its end report came and the readings before it were committed.
        db_path = os.path.join(run_dir, "telemetry.db")
        while True:
            finished = []
            try:
                db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
                try:
                    finished = db.execute(
                        "SELECT sensor, received, sent, gaps, missed FROM sensors"
                        " WHERE finished = 1").fetchall()
                finally:
                    db.close()
            except sqlite3.OperationalError:
                pass  # not created yet
            if len(finished) >= SENSORS:
                break
            if time.monotonic() > deadline:
                raise Failure(f"the aggregator marked {len(finished)} of {SENSORS} sensors "
                              f"finished in time: {finished}")
            time.sleep(0.2)

        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
        try:
            stored = {(s, m): (c, total) for s, m, c, total in db.execute(
                "SELECT sensor, metric, SUM(count), SUM(sum) FROM rollup"
                " GROUP BY sensor, metric")}
            sensor_rows = db.execute(
                "SELECT sensor, received, sent, gaps, missed FROM sensors").fetchall()
        finally:
            db.close()

        # 4. The must-show: stored totals == sent totals, exactly, per sensor and metric.
        problems = []
        for key in sorted(set(sent) | set(stored)):
            if key not in stored:
                problems.append(f"{key[0]} {key[1]}: sent {sent[key]}, nothing stored")
            elif key not in sent:
                problems.append(f"{key[0]} {key[1]}: stored {stored[key]}, never sent")
            elif stored[key] != sent[key]:
                problems.append(f"{key[0]} {key[1]}: sent count={sent[key][0]} "
                                f"sum={sent[key][1]!r}, stored count={stored[key][0]} "
                                f"sum={stored[key][1]!r}")
        for s, received, total_sent, gaps, missed in sensor_rows:
            if gaps or missed or received != total_sent:
                problems.append(f"{s}: the aggregator counted {gaps} gaps, {missed} missed, "
                                f"{received} received of {total_sent}")
        if problems:
            raise Failure("the stored totals differ from what the sensors sent:\n  " +
                          "\n  ".join(problems))
        readings = sum(c for c, _ in sent.values())
        print(f"the totals the aggregator stored equal what the sensors sent: {SENSORS} "
              f"sensors x {METRICS} metrics, {readings} readings, count and sum equal for each",
              flush=True)

        # 5. The tail printed readings: lines "tail ... telemetry.temperature.sensor.N SEQ ...".
        tail_deadline = min(deadline, time.monotonic() + 5)
        while True:
            tail = [l for l in list(lines)
                    if l.lstrip().startswith("tail") and "telemetry.temperature.sensor." in l]
            if tail or time.monotonic() > tail_deadline:
                break
            time.sleep(0.2)
        if not tail:
            raise Failure("the zmesh sub tail printed no reading")
        print(f"the zmesh sub tail printed {len(tail)} readings, e.g.: {tail[0]}", flush=True)
    except Failure as e:
        failed = str(e)
    finally:
        # Stop everything, even when a check failed, and leave no process behind.
        poll_state()
        if up.poll() is None:
            up.send_signal(signal.SIGINT)
            try:
                up.wait(timeout=20)
            except subprocess.TimeoutExpired:
                failed = failed or "zmesh up did not stop within 20 s of SIGINT"
                os.killpg(up.pid, signal.SIGKILL)
                up.wait()
        elif failed is None:
            failed = f"zmesh up exited by itself with status {up.returncode}"
        reader.join(timeout=5)
        if up.returncode != 0 and failed is None:
            failed = f"zmesh up exited {up.returncode} after SIGINT (expected 0)"
        # How each node ended: 0 for every one (a sanitizer report at exit makes it non-zero).
        # `zmesh up` sends each node one SIGTERM, and every node here stops cleanly on it.
        st = read_state(state_path) if failed is None else None
        for n in (st or {}).get("nodes", []):
            if n.get("exit_status") != 0:
                failed = (failed + "; " if failed else "") + \
                    f"{n['name']} ended with status {n.get('exit_status')} ({n['state']})"
        left = []
        for name, ps in sorted(pids.items()):
            for pid in ps:
                if alive(pid):
                    left.append(f"{name} (pid {pid}: {cmdline(pid)})")
                    if "zmesh" in cmdline(pid) or "telemetry-" in cmdline(pid):
                        os.kill(pid, signal.SIGKILL)
        if left:
            failed = (failed + "; " if failed else "") + "processes left running: " + \
                ", ".join(left)
        if not pids and failed is None:
            failed = "the state file never named a process"
    if failed:
        print("--- zmesh up output (last 60 lines) ---")
        for l in lines[-60:]:
            print(l)
        print(f"FAILED: {failed}")
        print(f"(run directory kept: {run_dir})")
        return 1
    print("zmesh up stopped on SIGINT (exit 0) and no process of the topology is left")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
