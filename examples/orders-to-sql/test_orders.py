#!/usr/bin/python3
# SPDX-License-Identifier: MPL-2.0
"""End-to-end test of examples/orders-to-sql, through `zmesh up`.

Starts the topology (orders.toml) with `zmesh up --state --run-dir`, posts orders to the API
while SIGKILLing the consumer twice (zmesh up restarts it), and checks that the database ends
up holding every order that got 202 exactly once and nothing else, a repeated Idempotency-Key
included. Then posts a poison order (a negative quantity, which the API lets through with
--check schema and the database's CHECK constraint refuses) and checks that it ends in Titanic's
dead-letter queue, shown by `zmesh dlq list`, and not in the database. Finally SIGINTs zmesh up
and checks that no process of the topology is left.

--db postgres starts a private PostgreSQL server (initdb, pg_ctl; as the postgres user when
run as root) on its own socket directory and port, and removes it afterwards, also on failure
(a watchdog process does it if this script is killed).
"""
import argparse
import ctypes
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

PG_BIN = os.environ.get("ZMESH_PG_BIN", "/usr/lib/postgresql/15/bin")


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def http(method, url, body=None, headers=None, timeout=30):
    """(status, parsed JSON or text) of one request."""
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


# ---- PostgreSQL ----------------------------------------------------------------------------


class PgServer:
    """A private PostgreSQL server: socket directory = its temp dir, no TCP."""

    def __init__(self):
        for tool in ("initdb", "pg_ctl", "postgres"):
            if not os.access(os.path.join(PG_BIN, tool), os.X_OK):
                raise Failure(f"no executable {PG_BIN}/{tool}: install the Debian package "
                              "postgresql (scripts/setup.sh does), or set ZMESH_PG_BIN")
        self.dir = tempfile.mkdtemp(prefix="zm-orders-pg-", dir="/tmp")  # short: socket path
        self.port = random.randint(20000, 60000)
        self.as_user = []
        if os.geteuid() == 0:
            import pwd
            pw = pwd.getpwnam("postgres")  # KeyError: no such user -> the test fails
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        os.chmod(self.dir, 0o700)
        data = os.path.join(self.dir, "data")
        # The watchdog: stops the server and removes its directory once our end of the pipe
        # closes, which happens however this script ends (SIGKILL by ctest's timeout included).
        stop = " ".join(self.as_user + [f"{PG_BIN}/pg_ctl", "-D", data, "-m", "immediate", "-w",
                                        "-t", "30", "-s", "stop"])
        self.watchdog = subprocess.Popen(
            ["/bin/sh", "-c", f"cat >/dev/null; {stop} >/dev/null 2>&1; rm -rf {self.dir}"],
            stdin=subprocess.PIPE, start_new_session=True)
        self.run([f"{PG_BIN}/initdb", "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8",
                  "--locale=C", "--no-sync"], "initdb")
        self.run([f"{PG_BIN}/pg_ctl", "-D", data, "-l", os.path.join(self.dir, "server.log"),
                  "-w", "-t", "30", "-s", "-o",
                  f"-k {self.dir} -p {self.port} -c listen_addresses=''", "start"], "pg_ctl start")
        self.url = f"postgresql:///postgres?host={self.dir}&port={self.port}&user=postgres"
        log(f"PostgreSQL running: {self.url}")

    def run(self, cmd, what):
        r = subprocess.run(self.as_user + cmd, capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise Failure(f"{what} failed ({r.returncode}): {r.stdout}{r.stderr}")

    def query(self, sql):
        r = subprocess.run(["psql", "-X", "-A", "-t", "-F", "|", "-v", "ON_ERROR_STOP=1",
                            "-h", self.dir, "-p", str(self.port), "-U", "postgres", "-d",
                            "postgres", "-c", sql], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise RuntimeError(r.stderr.strip())
        return [line.split("|") for line in r.stdout.splitlines() if line]

    def close(self):
        self.watchdog.stdin.close()  # the watchdog stops the server and removes the directory
        try:
            self.watchdog.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.watchdog.kill()
        check(not os.path.exists(self.dir), f"PostgreSQL directory {self.dir} left behind")
        log("PostgreSQL stopped and removed")


# ---- the database the consumer writes ------------------------------------------------------


def orders_rows(db, pg, run_dir):
    """[(message_id, customer, sku, quantity, unit_price_cents)] in the orders table; None if
    the table does not exist yet."""
    sql = "SELECT message_id, customer, sku, quantity, unit_price_cents FROM orders"
    if db == "postgres":
        try:
            return [(r[0], r[1], r[2], int(r[3]), int(r[4])) for r in pg.query(sql)]
        except RuntimeError as e:
            if "does not exist" in str(e):
                return None
            raise
    path = os.path.join(run_dir, "orders.db")
    if not os.path.exists(path):
        return None
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute(sql).fetchall()
    except sqlite3.OperationalError as e:
        if "no such table" in str(e):
            return None
        raise
    finally:
        con.close()


# ---- zmesh up --------------------------------------------------------------------------------


def die_with_parent():
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: zmesh up dies if this script does


def read_state(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None  # not written yet (it is replaced atomically, so never half-written)


def node(state, name):
    for n in state["nodes"]:
        if n["name"] == name:
            return n
    raise Failure(f"no node {name} in the state file: {[n['name'] for n in state['nodes']]}")


def wait_for(what, cond, timeout, up=None, step=0.1):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if up is not None and up.poll() is not None:
            raise Failure(f"zmesh up exited with status {up.returncode} while waiting for {what}")
        if time.monotonic() > deadline:
            raise Failure(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def topology_processes(run_dir):
    """pids of live processes whose command line names this run's directory."""
    found = []
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) == os.getpid():
            continue
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmd = f.read().decode(errors="replace")
            with open(f"/proc/{p}/stat") as f:
                st = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if run_dir in cmd and st != "Z":
            found.append((int(p), cmd.replace("\0", " ")))
    return found


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--zmesh", required=True)
    ap.add_argument("--bin", required=True, help="directory of orders-api and orders-consumer")
    ap.add_argument("--topology", required=True)
    ap.add_argument("--orders", type=int, default=300)
    ap.add_argument("--kills", type=int, default=2)
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="zm-orders-test-")
    run_dir = os.path.join(work, "run")
    state_path = os.path.join(work, "state.json")
    up_log_path = os.path.join(work, "up.log")
    env = dict(os.environ)
    env["PATH"] = os.path.abspath(args.bin) + os.pathsep + env.get("PATH", "")
    env["ORDERS_API_CHECK"] = "schema"  # the poison order must reach the database
    env["NO_COLOR"] = "1"
    env.pop("ORDERS_DB", None)
    env.pop("ZMESH_CURVE_KEY", None)
    env.pop("ZMESH_CURVE_SERVER_KEY", None)
    pg = None
    up = None
    up_log = None
    ok = False
    seen_pids = set()
    try:
        # -- the API alone, with no broker behind it: 503 naming what did not answer -------
        import socket
        with socket.socket() as sk:
            sk.bind(("127.0.0.1", 0))
            nothing = f"tcp://127.0.0.1:{sk.getsockname()[1]}"  # closed again: nobody there
        lone = subprocess.Popen([os.path.join(args.bin, "orders-api"), "--listen", "127.0.0.1:0",
                                 "--broker", nothing, "--timeout-ms", "300"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=die_with_parent)
        try:
            line = lone.stdout.readline()
            check("listening on http://127.0.0.1:" in line, f"orders-api said {line!r}")
            url = line.split("listening on ")[1].split(",")[0]
            # --check strict (the default): business rules are the API's too.
            status, body = http("POST", url + "/orders", json.dumps(
                {"customer": "c", "sku": "A", "quantity": -5, "unit_price_cents": 5}))
            check(status == 400 and "'quantity' must be from 1" in body.get("error", ""),
                  f"negative quantity with --check strict: expected 400, got {status} {body}")
            status, body = http("POST", url + "/orders", json.dumps(
                {"customer": "c", "sku": "A", "quantity": 1, "unit_price_cents": 5}))
            check(status == 503 and "titanic.request" in body.get("error", "")
                  and nothing in body["error"],
                  f"no broker: expected 503 naming titanic.request and {nothing}, got {status} "
                  f"{body}")
            lone.send_signal(signal.SIGTERM)
            check(lone.wait(timeout=10) == 0, f"orders-api exited {lone.returncode} on SIGTERM")
        finally:
            if lone.poll() is None:
                lone.kill()
                lone.wait()
        log(f"with no broker, POST /orders is 503: {body['error']}")

        if args.db == "postgres":
            pg = PgServer()
            env["ORDERS_DB"] = pg.url
        up_log = open(up_log_path, "w")
        cmd = [args.zmesh, "up", args.topology, "--state", state_path, "--run-dir", run_dir,
               "--no-color"]
        log("starting: " + " ".join(cmd))
        t0 = time.monotonic()
        up = subprocess.Popen(cmd, env=env, stdout=up_log, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
        state = wait_for("the state file to say ready",
                         lambda: (s := read_state(state_path)) and s.get("ready") and s, 60, up)
        log(f"topology ready in {time.monotonic() - t0:.1f} s")
        for n in state["nodes"]:
            if n.get("pid"):
                seen_pids.add(n["pid"])
        api = node(state, "api")["endpoints"]["http"]
        check(api.startswith("tcp://"), f"api endpoint {api}")
        base = "http://" + api[len("tcp://"):]

        # -- the API's answers to bad input ------------------------------------------------
        status, body = http("GET", base + "/healthz")
        check(status == 200, f"GET /healthz: {status} {body}")
        for bad, expect in [("{not json", "not valid JSON"),
                            ('["a"]', "JSON object"),
                            ('{"customer": "c", "quantity": 1, "unit_price_cents": 5}',
                             "missing field 'sku'"),
                            ('{"customer": "c", "sku": "A", "quantity": "3", '
                             '"unit_price_cents": 5}', "'quantity' must be a whole number"),
                            ('{"customer": "c", "sku": "A", "quantity": 1, '
                             '"unit_price_cents": 5, "colour": "red"}', "unknown field 'colour'")]:
            status, body = http("POST", base + "/orders", bad)
            check(status == 400 and expect in body.get("error", ""),
                  f"POST {bad!r}: expected 400 naming {expect!r}, got {status} {body}")
        log("bad orders get 400 with their reason")

        # -- orders while the consumer is killed -------------------------------------------
        accepted = {}  # message id -> (customer, sku, quantity, unit_price_cents)
        kill_at = {args.orders * (k + 1) // (args.kills + 1) for k in range(args.kills)}
        killed = 0
        last_killed = None
        dup_key = None
        t_post = time.monotonic()
        for i in range(args.orders):
            if i in kill_at:
                # The consumer zmesh up runs now: a new process after each kill (wait for the
                # restart, so as never to signal a pid that is gone).
                consumer = wait_for(
                    "the consumer to be running again",
                    lambda: (c := node(read_state(state_path), "consumer"))["pid"]
                    and c["pid"] != last_killed and c["state"] in ("running", "ready") and c,
                    30, up)
                os.kill(consumer["pid"], signal.SIGKILL)
                last_killed = consumer["pid"]
                seen_pids.add(last_killed)
                killed += 1
                log(f"order {i}: SIGKILLed the consumer (pid {last_killed}, restarts so far "
                    f"{consumer['restarts']}); posting on")
            order = {"customer": f"customer-{i % 17}", "sku": f"SKU-{i % 23}",
                     "quantity": 1 + i % 9, "unit_price_cents": 100 + i}
            headers = {}
            if i == args.orders // 2:
                dup_key = "%032x" % random.getrandbits(128)
                headers["Idempotency-Key"] = dup_key
            status, body = http("POST", base + "/orders", json.dumps(order), headers)
            check(status == 202, f"order {i}: expected 202, got {status} {body}")
            check(len(body.get("id", "")) == 32 and len(body.get("titanic_id", "")) == 32,
                  f"order {i}: 202 without ids: {body}")
            accepted[body["id"]] = (order["customer"], order["sku"], order["quantity"],
                                    order["unit_price_cents"])
            if headers:
                check(body["id"] == dup_key, f"Idempotency-Key ignored: {body}")
                # The same order again, as a client that lost the first answer would send it.
                status, body2 = http("POST", base + "/orders", json.dumps(order), headers)
                check(status == 202 and body2["id"] == dup_key,
                      f"repeated Idempotency-Key: {status} {body2}")
                check(body2["titanic_id"] != body["titanic_id"],
                      "the repeat should be a second durable request")
        log(f"{len(accepted)} orders accepted (202) in {time.monotonic() - t_post:.1f} s, "
            f"+1 repeated Idempotency-Key, consumer killed {killed} times")
        check(killed == args.kills, f"killed {killed} times, wanted {args.kills}")
        st = read_state(state_path)
        for n in st["nodes"]:
            if n.get("pid"):
                seen_pids.add(n["pid"])

        # -- every accepted order in the database exactly once -----------------------------
        def all_stored():
            rows = orders_rows(args.db, pg, run_dir)
            return rows is not None and len({r[0] for r in rows} & accepted.keys()) == len(accepted)
        t_wait = time.monotonic()
        wait_for(f"the database to hold all {len(accepted)} accepted orders", all_stored, 120, up,
                 step=0.5)
        time.sleep(2)  # a duplicate insert still in flight would show up now
        rows = orders_rows(args.db, pg, run_dir)
        counts = {}
        for r in rows:
            counts[r[0]] = counts.get(r[0], 0) + 1
        twice = {k: v for k, v in counts.items() if v != 1}
        check(not twice, f"orders stored more than once: {twice}")
        extra = set(counts) - accepted.keys()
        check(not extra, f"orders in the database that were never accepted: {extra}")
        for r in rows:
            check(tuple(r[1:]) == accepted[r[0]], f"order {r[0]} stored as {r[1:]}, "
                  f"posted as {accepted[r[0]]}")
        st = read_state(state_path)
        restarts = node(st, "consumer")["restarts"]
        check(restarts >= args.kills, f"consumer restarted {restarts} times, killed {killed}")
        log(f"database holds each of the {len(accepted)} accepted orders exactly once "
            f"({time.monotonic() - t_wait:.1f} s after the last post; consumer restarts: "
            f"{restarts})")

        # -- a request that is not an order is refused, and the consumer lives on -----------
        consumer_pid = node(read_state(state_path), "consumer")["pid"]
        keys = os.path.join(run_dir, "keys")
        broker = node(read_state(state_path), "broker")["endpoints"]["mdp"]
        r = subprocess.run([args.zmesh, "request", "--broker", broker, "--service",
                            "orders.store", "--retries", "1", "--timeout-ms", "10000",
                            "--curve-server-key", os.path.join(keys, "broker.key"),
                            "--curve-key", os.path.join(keys, "api.key_secret"),
                            "\xc1 not msgpack"], capture_output=True, text=True, env=env,
                           timeout=30)
        check(r.returncode != 0 and "422" in r.stderr and "not an order" in r.stderr,
              f"garbage to orders.store: expected a 422 refusal, got {r.returncode} "
              f"{r.stdout!r} {r.stderr!r}")
        time.sleep(0.5)
        check(node(read_state(state_path), "consumer")["pid"] == consumer_pid,
              "the consumer restarted after a garbage request")
        log(f"garbage sent to orders.store is refused: {r.stderr.strip()}")

        # -- a poison order ends in the dead-letter queue -----------------------------------
        poison = {"customer": "mallory", "sku": "POISON-1", "quantity": -5,
                  "unit_price_cents": 100}
        status, body = http("POST", base + "/orders", json.dumps(poison))
        check(status == 202, f"poison order (--check schema): expected 202, got {status} {body}")
        pid, tid = body["id"], body["titanic_id"]
        store = os.path.join(run_dir, "titanic.db")
        dlq_cmd = [args.zmesh, "dlq", "list", "--store", store, "--json"]

        def in_dlq():
            r = subprocess.run(dlq_cmd, capture_output=True, text=True, env=env, timeout=30)
            check(r.returncode == 0, f"{' '.join(dlq_cmd)}: {r.returncode} {r.stderr}")
            for e in json.loads(r.stdout):
                if e["id"] == tid:
                    return e
            return None
        entry = wait_for(f"the poison order {tid} in `zmesh dlq list`", in_dlq, 60, up, step=0.5)
        check(entry["service"] == "orders.store", f"dlq entry: {entry}")
        check(entry["attempts"] == 4, f"dlq entry after --max-attempts 4: {entry}")
        refusal = "CHECK constraint failed" if args.db == "sqlite" else "violates check constraint"
        check(refusal in entry["reason"] and pid in entry["reason"],
              f"dlq reason should be the database's refusal of order {pid}: {entry}")
        rows = orders_rows(args.db, pg, run_dir)
        check(pid not in {r[0] for r in rows}, "the poison order is in the database")
        check(len(rows) == len(accepted), f"{len(rows)} rows, {len(accepted)} accepted")
        text = subprocess.run([args.zmesh, "dlq", "list", "--store", store], capture_output=True,
                              text=True, env=env, timeout=30).stdout
        log(f"poison order dead-lettered after {entry['attempts']} attempts: {text.strip()}")

        # -- Ctrl-C stops everything ---------------------------------------------------------
        st = read_state(state_path)
        for n in st["nodes"]:
            if n.get("pid"):
                seen_pids.add(n["pid"])
        up.send_signal(signal.SIGINT)
        try:
            rc = up.wait(timeout=30)
        except subprocess.TimeoutExpired:
            raise Failure("zmesh up did not stop within 30 s of SIGINT")
        check(rc == 0, f"zmesh up exited with status {rc} after SIGINT")
        left = topology_processes(run_dir)
        check(not left, f"processes left after zmesh up stopped: {left}")
        for p in seen_pids:
            try:
                os.kill(p, 0)
                check(False, f"pid {p} of the topology still exists")
            except ProcessLookupError:
                pass
        log(f"SIGINT: zmesh up exited 0, none of the {len(seen_pids)} node pids is left")
        # Under sanitizers a node that trips one dies (and is restarted): its report is only in
        # the log. Any report fails the test.
        up_log.flush()
        with open(up_log_path, errors="replace") as f:
            text = f.read()
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                       "WARNING: ThreadSanitizer"):
            check(marker not in text, f"a sanitizer report in the nodes' output: {marker}")
        ok = True
    finally:
        if up is not None and up.poll() is None:
            up.kill()
            up.wait()
        if up_log is not None:
            up_log.close()
        if pg is not None:
            try:
                pg.close()
            except Failure as e:
                print(f"FAIL: {e}", flush=True)
                ok = False
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"--- zmesh up output ({up_log_path}, kept with {work}) ---")
            try:
                with open(up_log_path) as f:
                    lines = f.readlines()
                sys.stdout.writelines(lines[-150:])
            except OSError:
                pass
    return ok


if __name__ == "__main__":
    try:
        sys.exit(0 if main() else 1)
    except Failure as e:
        print(f"FAIL: {e}", flush=True)
        sys.exit(1)
