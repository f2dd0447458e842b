# SPDX-License-Identifier: MPL-2.0
"""test_message_controls.py - issue 10's message controls, through the CLI, end to end.

Usage: test_message_controls.py --zmesh PATH/TO/zmesh SCENARIO

Each scenario starts its own `zmesh broker` on tcp://127.0.0.1:*, real `zmesh worker --exec`
processes whose command appends a line to a file for every execution (so executions are
counted by the file system, not by the code under test), and `zmesh request` / `zmesh dlq`
runs. The MDP/0.2 scenario's worker is plain python3-zmq written from 18/MDP. Every process is
stopped at the end, also on failure.
"""
import json
import os
import select
import shlex
import signal
import subprocess
import sys
import tempfile
import time

import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_interop import Broker, Failure, Process, check, run_cli_scenario  # noqa: E402

CLI_TIMEOUT = 30


class Env:
    def __init__(self, zmesh):
        self.zmesh = zmesh
        self.ctx = zmq.Context()
        self.processes = []
        self.dir = tempfile.TemporaryDirectory()
        self.broker = None

    def path(self, name):
        return os.path.join(self.dir.name, name)

    def start_broker(self, *extra):
        self.broker = Broker(self.zmesh, *extra)
        self.processes.append(self.broker)
        return self.broker

    def worker(self, service, command, *extra):
        p = Process("zmesh worker", [self.zmesh, "worker", "--broker", self.broker.endpoint,
                                     "--service", service, "--exec", command, *extra])
        self.processes.append(p)
        return p

    def request_argv(self, service, *args):
        return [self.zmesh, "request", "--broker", self.broker.endpoint, "--service", service,
                *args]

    def request(self, service, *args, timeout=CLI_TIMEOUT):
        return subprocess.run(self.request_argv(service, *args), stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=timeout)

    def cli(self, *args, timeout=CLI_TIMEOUT):
        return subprocess.run([self.zmesh, *args], stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=timeout)

    def stats(self):
        r = self.cli("stats", "--broker", self.broker.endpoint)
        check(r.returncode == 0, "zmesh stats failed: %s" % r.stderr.decode(errors="replace"))
        out = {}
        for line in r.stdout.decode().splitlines():
            name, value = line.split()
            out[name] = int(value)
        return out

    def wait_stat(self, name, want, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            value = self.stats()[name]
            if value == want:
                return
            if time.monotonic() >= deadline:
                raise Failure("broker stat %s is %d, expected %d within %.0f s"
                              % (name, value, want, timeout))
            time.sleep(0.05)

    def close(self):
        for p in reversed(self.processes):
            p.close()
        self.ctx.term()
        self.dir.cleanup()


def count_lines(path):
    try:
        with open(path, "rb") as f:
            return len(f.read().splitlines())
    except FileNotFoundError:
        return 0


def wait_lines(path, n, timeout=10.0):
    deadline = time.monotonic() + timeout
    while count_lines(path) < n:
        if time.monotonic() >= deadline:
            raise Failure("%s has %d lines, expected %d within %.0f s"
                          % (path, count_lines(path), n, timeout))
        time.sleep(0.02)


def text(b):
    return b.decode(errors="replace").strip()


def counting(path, then="cat"):
    """A shell command that appends one line to `path` per execution, then runs `then`."""
    return "echo x >> %s; %s" % (shlex.quote(path), then)


def wait_registered(env, service):
    deadline = time.monotonic() + 10
    while True:
        r = env.request("mmi.service", "--timeout-ms", "1000", "--retries", "1", service)
        if r.returncode == 0 and text(r.stdout) == "200":
            return
        check(time.monotonic() < deadline, "service %s not registered within 10 s" % service)
        time.sleep(0.05)


# -- scenarios ------------------------------------------------------------------------------

def scenario_once(env):
    """A slow worker (1.5 s) and a client that retries every 500 ms: executed exactly once."""
    env.start_broker()
    count = env.path("count")
    env.worker("slow", counting(count, "sleep 1.5; echo done"))
    wait_registered(env, "slow")
    t0 = time.monotonic()
    r = env.request("slow", "--timeout-ms", "500", "--retries", "5", "job")
    took = time.monotonic() - t0
    check(r.returncode == 0, "zmesh request failed (rc=%d): %s" % (r.returncode, text(r.stderr)))
    check(text(r.stdout) == "done", "printed %r, expected 'done'" % text(r.stdout))
    check(took >= 1.4, "the reply came after %.2f s, before the worker could have finished" % took)
    time.sleep(2.0)  # room for a late duplicate execution, which must not come
    check(count_lines(count) == 1, "executed %d times" % count_lines(count))
    stats = env.stats()
    check(stats["duplicates"] >= 2, "the broker joined %d retries" % stats["duplicates"])
    check(stats["dispatched"] == 1, "dispatched %d times" % stats["dispatched"])
    return "1 execution for %d retries joined, reply after %.2f s" % (stats["duplicates"], took)


def scenario_gave_up(env):
    """A request whose client gave up (timed out, or was killed) is never executed."""
    env.start_broker()
    count = env.path("count")
    r = env.request("late", "--timeout-ms", "300", "--retries", "1", "work")
    check(r.returncode != 0, "zmesh request succeeded with no worker: %r" % r.stdout)
    # A client killed with its request queued: its connection closes, the request is dropped.
    killed = subprocess.Popen(env.request_argv("late", "--timeout-ms", "30000", "work"),
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        env.wait_stat("queued", 1)
    finally:
        killed.kill()
        killed.wait()
    env.wait_stat("queued", 0)
    env.worker("late", counting(count, "echo ran"))
    wait_registered(env, "late")
    time.sleep(1.0)
    check(count_lines(count) == 0, "executed %d times after its client gave up" % count_lines(count))
    stats = env.stats()
    check(stats["expired"] == 1, "expired %d" % stats["expired"])
    check(stats["abandoned"] == 1, "abandoned %d" % stats["abandoned"])
    return "0 executions; 1 expired at its deadline, 1 dropped with its killed client"


def scenario_priority(env):
    """40 requests at priority 0, then 40 at 9, queued; every 9 runs before the 10th 0."""
    env.start_broker()
    order = env.path("order")
    clients = []
    try:
        for prio, n in ((0, 40), (9, 40)):
            for i in range(n):
                clients.append(subprocess.Popen(
                    env.request_argv("work", "--priority", str(prio), "--timeout-ms", "60000",
                                     "--retries", "1", "p%d-%d" % (prio, i)),
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
            # Generous: under the sanitizers 40 CLI processes start on 2 cores.
            env.wait_stat("queued", len(clients), timeout=120)
        env.worker("work", "cat >> %s; echo >> %s; echo ok" % (shlex.quote(order), shlex.quote(order)))
        wait_lines(order, 80, timeout=120)
        for c in clients:
            _, err = c.communicate(timeout=30)
            check(c.returncode == 0, "a client failed: %s" % text(err))
    finally:
        for c in clients:
            if c.poll() is None:
                c.kill()
                c.wait()
    with open(order) as f:
        ran = [line.strip() for line in f if line.strip()]
    check(len(ran) == 80, "%d executions for 80 requests" % len(ran))
    last_high = max(i for i, body in enumerate(ran) if body.startswith("p9-"))
    lows = [i for i, body in enumerate(ran) if body.startswith("p0-")]
    check(last_high < lows[9], "the 10th priority-0 request ran at %d, before the last priority-9"
          " one at %d: %s" % (lows[9], last_high, ran))
    return "last priority-9 at position %d, 10th priority-0 at %d (lower ones got %d turns before)" % (
        last_high, lows[9], sum(1 for i in lows if i < last_high))


def scenario_dlq_replay(env):
    """An expired request is found by `zmesh dlq list`, replayed once, and then answered."""
    env.start_broker()
    count = env.path("count")
    msg_id = "0123456789abcdef0123456789abcdef"
    # The broker expires it at its TTL, well inside the client's wait, so its 504 arrives in
    # time even on a loaded machine (with TTL = timeout the two race, within a 200 ms grace).
    r = env.request("billing", "--id", msg_id, "--ttl-ms", "300", "--timeout-ms", "3000",
                    "--retries", "1", "--type", "invoice", "charge 42")
    check(r.returncode != 0, "zmesh request succeeded with no worker")
    check("504" in text(r.stderr), "the error does not say 504: %s" % text(r.stderr))
    listed = env.cli("dlq", "list", "--broker", env.broker.endpoint)
    check(listed.returncode == 0, "zmesh dlq list failed: %s" % text(listed.stderr))
    check(msg_id in text(listed.stdout) and "billing" in text(listed.stdout),
          "zmesh dlq list does not show the request: %r" % text(listed.stdout))
    # The same through --json: an array of entries, and show as one object.
    listed = env.cli("dlq", "list", "--json", "--broker", env.broker.endpoint)
    entries = json.loads(text(listed.stdout))
    check([(e["id"], e["service"], e["code"]) for e in entries] == [(msg_id, "billing", "504")],
          "zmesh dlq list --json: %r" % entries)
    shown = json.loads(text(env.cli("dlq", "show", msg_id, "--json", "--broker",
                                    env.broker.endpoint).stdout))
    check(shown["type"] == "invoice" and shown["body"] == ["charge 42"],
          "zmesh dlq show --json: %r" % shown)
    replay = env.cli("dlq", "replay", msg_id, "--broker", env.broker.endpoint)
    check(replay.returncode == 0, "zmesh dlq replay failed: %s" % text(replay.stderr))
    again = env.cli("dlq", "replay", msg_id, "--broker", env.broker.endpoint)
    check(again.returncode != 0, "a second replay of the same entry succeeded")
    env.worker("billing", counting(count, "echo charged; cat"))
    wait_lines(count, 1)
    # The replayed request's reply waits for its client, who asks with the same id.
    r = env.request("billing", "--id", msg_id, "--timeout-ms", "2000", "--retries", "1",
                    "charge 42")
    check(r.returncode == 0, "zmesh request --id failed: %s" % text(r.stderr))
    check(text(r.stdout) == "charged\ncharge 42", "printed %r" % text(r.stdout))
    time.sleep(0.5)
    check(count_lines(count) == 1, "executed %d times" % count_lines(count))
    listed = env.cli("dlq", "list", "--broker", env.broker.endpoint)
    check(msg_id not in text(listed.stdout), "still in the DLQ after replay: %r" % text(listed.stdout))
    return "expired, listed, replayed once, executed once, answered by id"


def mdp02_worker(ctx, endpoint, service, stop):
    """A plain python3-zmq MDP/0.2 worker (18/MDP): three PARTIALs 400 ms apart, then FINAL."""
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(endpoint)
    sock.send_multipart([b"MDPW02", b"\x01", service.encode()])
    served = 0
    while not stop():
        if not sock.poll(100):
            continue
        msg = sock.recv_multipart()
        if msg[:2] == [b"MDPW02", b"\x05"]:
            continue
        if msg[:2] != [b"MDPW02", b"\x02"] or len(msg) < 5 or msg[3] != b"":
            raise Failure("MDP/0.2 worker got a frame it cannot parse: %r" % msg[:6])
        client = msg[2]
        for part in (b"part 1", b"part 2", b"part 3"):
            sock.send_multipart([b"MDPW02", b"\x03", client, b"", part])
            time.sleep(0.4)
        sock.send_multipart([b"MDPW02", b"\x04", client, b"", b"final"])
        served += 1
    sock.send_multipart([b"MDPW02", b"\x06"])
    sock.close()
    return served


def scenario_mdp02_stream(env):
    """A pyzmq MDP/0.2 worker streams 3 PARTIALs and a FINAL; `zmesh request` prints each as it
    arrives."""
    import threading
    env.start_broker()
    stopping = threading.Event()
    errors = []

    def run():
        try:
            mdp02_worker(env.ctx, env.broker.endpoint, "progress", stopping.is_set)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        wait_registered(env, "progress")
        proc = subprocess.Popen(env.request_argv("progress", "--timeout-ms", "10000", "go"),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        got = []
        buf = b""
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + 15
        while len(got) < 4 and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if not ready:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                got.append((time.monotonic(), line.decode()))
        proc.wait(10)
        check(proc.returncode == 0, "zmesh request exited %d: %s"
              % (proc.returncode, text(proc.stderr.read())))
    finally:
        stopping.set()
        t.join(5)
    check(not errors, "MDP/0.2 worker: %s" % (errors[:1],))
    check([line for _, line in got] == ["part 1", "part 2", "part 3", "final"],
          "printed %r" % [line for _, line in got])
    spread = got[3][0] - got[0][0]
    check(spread >= 1.0, "the four parts were printed within %.2f s of each other: not as they"
          " arrived (the worker spaced them 400 ms apart)" % spread)
    return "4 parts printed in order over %.2f s" % spread


def scenario_fail_fast(env):
    """--fail-fast: a clear error at once, naming the service and similar known ones."""
    env.start_broker()
    env.worker("inventory", "cat")
    wait_registered(env, "inventory")
    t0 = time.monotonic()
    r = env.request("inventroy", "--fail-fast", "--timeout-ms", "20000", "x")
    took = time.monotonic() - t0
    check(r.returncode == 1, "rc=%d" % r.returncode)
    err = text(r.stderr)
    check("inventroy" in err and "inventory" in err and "404" in err, "stderr: %r" % err)
    # At once, not at the end of the 20 s wait (the process start included).
    check(took < 5.0, "the error took %.2f s" % took)
    return "404 after %.2f s: %s" % (took, err)


def scenario_type_and_deadline(env):
    """The type reaches the worker's command; the command is killed at the deadline."""
    env.start_broker()
    env.worker("typed", 'echo "$ZMESH_TYPE"')
    wait_registered(env, "typed")
    r = env.request("typed", "--type", "order.new", "x")
    check(r.returncode == 0 and text(r.stdout) == "order.new",
          "rc=%d stdout=%r stderr=%r" % (r.returncode, text(r.stdout), text(r.stderr)))
    count = env.path("count")
    env.worker("sleepy", "sleep 3; echo late >> %s" % shlex.quote(count))
    wait_registered(env, "sleepy")
    r = env.request("sleepy", "--timeout-ms", "500", "--retries", "1", "x")
    check(r.returncode != 0, "a request past its deadline succeeded")
    time.sleep(3.5)
    check(count_lines(count) == 0, "the command ran past the request's deadline")
    return "type carried; the command was killed at the deadline"


def scenario_durable_once(env):
    """A durable request retried while no Titanic node runs is stored once when one starts."""
    import sqlite3
    env.start_broker()
    store = env.path("titanic.db")
    env.worker("echo", "cat")
    wait_registered(env, "echo")
    client = subprocess.Popen(
        env.request_argv("echo", "--durable", "--timeout-ms", "20000", "--retries", "8", "keep me"),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # titanic.request waits in the broker while the client retries (every 2.5 s).
        env.wait_stat("queued", 1, timeout=10)
        time.sleep(5.5)  # at least two retries, all joined to the one queued request
        titanic = Process("zmesh titanic", [env.zmesh, "titanic", "--broker", env.broker.endpoint,
                                            "--store", store])
        env.processes.append(titanic)
        out, err = client.communicate(timeout=60)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    check(client.returncode == 0, "zmesh request --durable exited %d: %s"
          % (client.returncode, text(err)))
    check(text(out) == "keep me", "printed %r" % text(out))
    stats = env.stats()
    check(stats["duplicates"] >= 2, "the broker joined %d retries" % stats["duplicates"])
    db = sqlite3.connect(store)
    try:
        rows = db.execute("SELECT COUNT(*) FROM requests").fetchone()[0]
    finally:
        db.close()
    # The client closes the one request it knows of after the reply, which deletes its row;
    # a copy stored for each retry would be left behind.
    check(rows == 0, "%d rows left in the Titanic store: retries were stored as copies" % rows)
    return "%d retries joined into one stored request" % stats["duplicates"]


SCENARIOS = {name[len("scenario_"):]: fn for name, fn in globals().items()
             if name.startswith("scenario_")}


def main():
    return run_cli_scenario(SCENARIOS, Env)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    sys.exit(main())
