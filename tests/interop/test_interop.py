# SPDX-License-Identifier: MPL-2.0
"""test_interop.py - MDP/0.1 interoperability scenarios against a real `zmesh broker`.

Usage: test_interop.py --zmesh PATH/TO/zmesh SCENARIO [SCENARIO ...]   (or `all`)

Each scenario starts its own broker on tcp://127.0.0.1:* (the endpoint is read from its stdout),
mixes the independent peers of mdp_peers.py with zmesh's own `worker` and `request` commands, and
always stops every process it started, also on failure. Exit 0 = every scenario passed; on
failure one `FAIL <scenario>: <reason>` line, then the broker's log.
"""
import argparse
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mdp_peers import MdpClient, MdpWorker, start_worker_thread  # noqa: E402

SCENARIO_TIMEOUT = 45      # seconds; below ctest's TIMEOUT so our cleanup still runs
STARTUP_TIMEOUT = 20.0     # broker start, worker registration (a sanitizer build beside
                           # other suites took over 5 s to print its endpoint once, in CI)
REQUEST_TIMEOUT = 5.0      # one request (no retries: a lost message is a failure)
CLI_TIMEOUT = 15           # one `zmesh request` run


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


class ScenarioTimeout(BaseException):
    pass


# -- processes ------------------------------------------------------------------------------

class Process:
    """A child whose stderr goes to a temp file; stopped by stop() or, at the latest, close()."""

    def __init__(self, name, argv, stdout=None, env=None):
        self.name = name
        self.argv = argv
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout,
                                     stderr=self.err, env=env)

    def stop(self, sig=signal.SIGTERM, timeout=3.0):
        """Signal the child and wait; returns (exit code, seconds it took to exit)."""
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise Failure("%s did not exit within %.1f s of %s" % (self.name, timeout, sig.name))
        return rc, time.monotonic() - t0

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()

    def log(self):
        self.err.seek(0)
        return self.err.read().decode(errors="replace")


class Broker(Process):
    def __init__(self, zmesh, *extra):
        super().__init__("broker", [zmesh, "broker", "--mdp", "tcp://127.0.0.1:*", *extra],
                         stdout=subprocess.PIPE)
        try:
            self.endpoint = self._read_endpoint()
        except Failure as e:
            # Not yet in the scenario's process list: stop it here, and say what it printed.
            self.close()
            raise Failure("%s; its stderr: %r" % (e, self.log()[-2000:])) from None

    def _read_endpoint(self):
        fd = self.proc.stdout.fileno()
        buf = b""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure("broker printed no endpoint within %.0f s" % STARTUP_TIMEOUT)
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise Failure("broker exited at start (rc=%s)" % self.proc.wait())
                buf += chunk
        endpoint = buf.split(b"\n", 1)[0].decode().strip()
        check(endpoint.startswith("tcp://127.0.0.1:") and not endpoint.endswith(":*"),
              "broker printed %r, not a bound endpoint" % endpoint)
        return endpoint


class Env:
    """What a scenario runs with; close() undoes everything it started."""

    def __init__(self, zmesh):
        self.zmesh = zmesh
        self.ctx = zmq.Context()
        self.processes = []
        self.workers = []   # (MdpWorker, thread)
        self.clients = []
        self.broker = None

    def start_broker(self, *extra):
        self.broker = Broker(self.zmesh, *extra)
        self.processes.append(self.broker)
        return self.broker

    def zmesh_worker(self, service, *extra):
        p = Process("zmesh worker", [self.zmesh, "worker", "--broker", self.broker.endpoint,
                                     "--service", service, "--echo", *extra])
        self.processes.append(p)
        return p

    def py_worker(self, service, **kw):
        w = MdpWorker(self.ctx, self.broker.endpoint, service, **kw)
        self.workers.append((w, start_worker_thread(w)))
        return w

    def py_client(self, **kw):
        kw.setdefault("timeout", REQUEST_TIMEOUT)
        kw.setdefault("retries", 1)
        c = MdpClient(self.ctx, self.broker.endpoint, **kw)
        self.clients.append(c)
        return c

    def zmesh_request(self, service, body=None, stdin=None):
        argv = [self.zmesh, "request", "--broker", self.broker.endpoint, "--service", service,
                "--timeout-ms", str(int(REQUEST_TIMEOUT * 1000)), "--retries", "1"]
        if body is not None:
            argv.append(body)
        return subprocess.run(argv, input=stdin, capture_output=True, timeout=CLI_TIMEOUT)

    def stop_py_worker(self, w, timeout=3.0):
        for worker, thread in self.workers:
            if worker is w:
                worker.stop()
                thread.join(timeout)
                check(not thread.is_alive(), "python worker %s did not stop" % w.service)

    def close(self):
        """Returns False if a worker thread would not stop (the context must then be left)."""
        for c in self.clients:
            c.close()
        clean = True
        for w, _ in self.workers:
            w.stop()
        for w, t in self.workers:
            t.join(3.0)
            clean = clean and not t.is_alive()
        for p in reversed(self.processes):
            p.close()
        if clean:
            self.ctx.term()
        return clean


def wait_mmi(env, service, want, timeout=STARTUP_TIMEOUT):
    """Polls mmi.service until it answers `want` ("200"/"404"); the last answer on timeout."""
    client = env.py_client()
    deadline = time.monotonic() + timeout
    while True:
        answer = client.request("mmi.service", service)
        check(len(answer) == 1, "mmi.service reply has %d frames: %r" % (len(answer), answer))
        if answer[0] == want.encode() or time.monotonic() >= deadline:
            return answer[0].decode()
        time.sleep(0.02)


def registered(env, service):
    state = wait_mmi(env, service, "200")
    check(state == "200", "service %r not registered after %.0f s (mmi says %s)"
          % (service, STARTUP_TIMEOUT, state))


def bodies(n, tag):
    """n request bodies (lists of frames) covering the shapes a broker must pass unchanged."""
    out = []
    for i in range(n):
        uid = b"%s-%d" % (tag.encode(), i)
        kind = i % 8
        if kind == 0:
            out.append([uid])
        elif kind == 1:
            out.append([uid, b"second", b"third frame"])
        elif kind == 2:
            out.append([b""])                                  # one empty frame
        elif kind == 3:
            out.append([b"", uid, b""])                        # empty frames around data
        elif kind == 4:
            out.append([bytes(range(256)) + uid])              # every byte value, NULs included
        elif kind == 5:
            out.append([uid + b"." * 65536])                   # a 64 KiB frame
        elif kind == 6:
            out.append([uid] + [b"f%d" % k for k in range(20)])  # many frames
        else:
            out.append([b"MDPC01", b"\x05", uid])              # frames that look like MDP
    return out


def run_clients(clients, per_client, tag, expect=lambda body: body):
    """Each client sends its bodies in its own thread; returns (sent, list of errors)."""
    errors = []
    sent = [0]
    lock = threading.Lock()

    def one(idx, client):
        try:
            for body in bodies(per_client, "%s%d" % (tag, idx)):
                reply = client.request(tag, body)
                with lock:
                    sent[0] += 1
                if reply != expect(body):
                    errors.append("client %d: sent %r..., got %r..."
                                  % (idx, [f[:40] for f in body][:4], [f[:40] for f in reply][:4]))
                    return
        except Exception as e:  # noqa: BLE001 - reported as a test failure
            errors.append("client %d: %s: %s" % (idx, type(e).__name__, e))

    threads = [threading.Thread(target=one, args=(i, c), daemon=True) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(SCENARIO_TIMEOUT - 10)
        if t.is_alive():
            errors.append("a client thread hung")
    return sent[0], errors


def stop_broker_cleanly(env):
    rc, took = env.broker.stop()
    check(rc == 0, "broker exited with %d on SIGTERM" % rc)
    return took


def lines(text):
    return text.decode(errors="replace").split("\n")


# -- scenarios ------------------------------------------------------------------------------

def scenario_py_py(env):
    """a. python clients (REQ and DEALER, concurrent) -> broker -> two python workers."""
    env.start_broker()
    workers = [env.py_worker("py.echo") for _ in range(2)]
    registered(env, "py.echo")
    clients = [env.py_client(use_dealer=bool(i % 2)) for i in range(4)]
    sent, errors = run_clients(clients, 50, "py.echo")
    check(not errors, "; ".join(errors[:3]))
    check(sent == 200, "only %d of 200 requests answered" % sent)
    served = sum(w.snapshot()["requests"] for w in workers)
    check(served == 200, "workers saw %d requests for 200 sent" % served)
    for w in workers:
        check(w.malformed == 0, "python worker dropped malformed broker messages: %s" % w.errors[:3])
    stop_broker_cleanly(env)
    return "200 requests from 4 clients, served %s" % [w.requests for w in workers]


def scenario_py_zmesh(env):
    """b. python clients -> broker -> `zmesh worker --echo` (our library's worker)."""
    env.start_broker()
    worker = env.zmesh_worker("cpp.echo")
    registered(env, "cpp.echo")
    clients = [env.py_client(use_dealer=False), env.py_client(use_dealer=True)]
    sent, errors = run_clients(clients, 100, "cpp.echo")
    check(not errors, "; ".join(errors[:3]))
    check(sent == 200, "only %d of 200 requests answered" % sent)
    rc, _ = worker.stop()
    check(rc == 0, "zmesh worker exited with %d on SIGTERM: %s" % (rc, worker.log()[-500:]))
    stop_broker_cleanly(env)
    return "200 requests answered by zmesh worker"


def py_service_handler(body):
    return [b"py", b"n=%d" % len(body)] + [f.upper() for f in body]


def scenario_zmesh_py(env):
    """c. `zmesh request` (our library's client) -> broker -> python worker."""
    env.start_broker()
    w = env.py_worker("py.svc", handler=py_service_handler)
    registered(env, "py.svc")
    cases = [("hello", None, ["py", "n=1", "HELLO", ""]),
             ("", None, ["py", "n=1", "", ""]),                 # one empty body frame
             ("two words", None, ["py", "n=1", "TWO WORDS", ""]),
             ("-", b"from stdin\n", ["py", "n=1", "FROM STDIN", ""])]
    for body, stdin, want in cases:
        r = env.zmesh_request("py.svc", body, stdin)
        check(r.returncode == 0, "zmesh request %r exited %d: %s"
              % (body, r.returncode, r.stderr.decode(errors="replace").strip()))
        check(lines(r.stdout) == want, "zmesh request %r printed %r, expected %r"
              % (body, lines(r.stdout), want))
    r = env.zmesh_request("mmi.service", "py.svc")
    check(r.returncode == 0 and lines(r.stdout) == ["200", ""],
          "zmesh request mmi.service py.svc gave rc=%d %r" % (r.returncode, r.stdout))
    check(w.snapshot()["requests"] == len(cases),
          "python worker saw %d requests for %d sent" % (w.requests, len(cases)))
    check(w.malformed == 0, "python worker dropped malformed broker messages: %s" % w.errors[:3])
    stop_broker_cleanly(env)
    return "%d CLI requests answered by the python worker" % len(cases)


def scenario_zmesh_zmesh(env):
    """d. `zmesh request` -> broker -> `zmesh worker --echo`: our client and worker."""
    env.start_broker()
    worker = env.zmesh_worker("cpp.echo")
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:  # registration seen through our own client only
        r = env.zmesh_request("mmi.service", "cpp.echo")
        if r.stdout == b"200\n":
            check(r.returncode == 0, "mmi.service 200 via zmesh request exited %d: %r"
                  % (r.returncode, r.stderr))
            break
        # Not registered yet: 404 on stdout, and exit 1 with a line naming the status.
        check(r.stdout == b"404\n" and r.returncode == 1 and b"404" in r.stderr,
              "mmi.service via zmesh request failed: rc=%d %r %r"
              % (r.returncode, r.stdout, r.stderr))
        check(time.monotonic() < deadline, "zmesh worker not registered: mmi says %r" % r.stdout)
        time.sleep(0.02)
    cases = [("hello", None, ["hello", ""]),
             ("", None, ["", ""]),
             ("-", b"line one\nline two\n", ["line one", "line two", ""]),
             ("x" * 10000, None, ["x" * 10000, ""])]
    for body, stdin, want in cases:
        r = env.zmesh_request("cpp.echo", body, stdin)
        check(r.returncode == 0, "zmesh request exited %d: %s"
              % (r.returncode, r.stderr.decode(errors="replace").strip()))
        check(lines(r.stdout) == want, "zmesh request %r printed %r, expected %r"
              % (body[:20], lines(r.stdout)[:3], want[:3]))
    rc, _ = worker.stop()
    check(rc == 0, "zmesh worker exited with %d on SIGTERM" % rc)
    stop_broker_cleanly(env)
    return "%d CLI requests echoed by zmesh worker" % len(cases)


def scenario_disconnect(env):
    """e. SIGTERM: the broker sends DISCONNECT to the python worker and exits 0 within ~1 s."""
    env.start_broker()
    w = env.py_worker("py.bye", reconnect_on_disconnect=False)
    registered(env, "py.bye")
    check(env.py_client().request("py.bye", [b"ping"]) == [b"ping"], "python worker did not echo")
    took = stop_broker_cleanly(env)
    check(took <= 1.5, "broker took %.2f s to exit after SIGTERM" % took)
    check(w.disconnected.wait(2.0), "python worker got no DISCONNECT from the stopping broker")
    check(w.snapshot()["disconnects"] == 1, "python worker got %d DISCONNECTs" % w.disconnects)
    return "broker exited 0 in %.3f s; worker got DISCONNECT" % took


def scenario_mmi(env):
    """f. mmi.service from the python client: 200, 404, 501, and 404 after the worker leaves."""
    env.start_broker()
    w = env.py_worker("py.mmi")
    registered(env, "py.mmi")
    c = env.py_client(use_dealer=True)
    for service, body, want in [("mmi.service", "py.mmi", b"200"),
                                ("mmi.service", "no.such.service", b"404"),
                                ("mmi.service", "", b"404"),
                                ("mmi.nonexistent", "py.mmi", b"501")]:
        reply = c.request(service, [body.encode()])
        check(reply == [want], "%s %r answered %r, expected %r" % (service, body, reply, [want]))
    env.stop_py_worker(w)  # it says DISCONNECT as it leaves
    state = wait_mmi(env, "py.mmi", "404", timeout=2.0)
    check(state == "404", "mmi.service still says %s after the worker sent DISCONNECT" % state)
    stop_broker_cleanly(env)
    return "200/404/501 as expected; 404 after worker DISCONNECT"


def scenario_heartbeat(env):
    """g. heartbeats both ways at 200 ms: the worker survives 2 s+ of idleness and still serves.

    A control worker that never heartbeats must be expired in the same time, which shows the
    broker really checks, so the first worker's survival is owed to its heartbeats."""
    interval = 0.2
    env.start_broker("--heartbeat-ms", "200", "--liveness", "3")
    live = env.py_worker("py.hb", heartbeat=interval, liveness=3)
    mute = env.py_worker("py.mute", heartbeat=interval, liveness=3, send_heartbeats=False,
                         reconnect_on_disconnect=False)
    registered(env, "py.hb")
    registered(env, "py.mute")
    before = live.snapshot()
    idle_period = 2.5  # the time under test: nothing but heartbeats on the wire
    t0 = time.monotonic()
    expired = mute.disconnected.wait(idle_period)
    time.sleep(max(0.0, idle_period - (time.monotonic() - t0)))
    after = live.snapshot()
    check(expired, "broker did not expire a worker that sent no heartbeat for %.1f s" % idle_period)
    check(after["disconnects"] == 0, "heartbeating worker got DISCONNECT from the broker")
    check(after["broker_silences"] == 0 and after["reconnects"] == 0,
          "heartbeating worker took the broker for dead (%s)" % after)
    # In 2.5 s at 200 ms about 12 each way; ask for half, so a slow machine still passes.
    sent = after["heartbeats_sent"] - before["heartbeats_sent"]
    heard = after["heartbeats_received"] - before["heartbeats_received"]
    check(sent >= 6, "worker sent only %d HEARTBEATs in %.1f s" % (sent, idle_period))
    check(heard >= 6, "broker sent only %d HEARTBEATs in %.1f s" % (heard, idle_period))
    c = env.py_client()
    check(c.request("mmi.service", "py.hb") == [b"200"], "py.hb not registered after idling")
    check(c.request("mmi.service", "py.mute") == [b"404"], "expired py.mute still registered")
    check(c.request("py.hb", [b"still there"]) == [b"still there"], "py.hb did not answer")
    check(live.snapshot()["requests"] == 1, "py.hb served %d requests" % live.requests)
    stop_broker_cleanly(env)
    return "idle %.1f s: %d HEARTBEATs sent, %d received; silent worker expired" % (
        idle_period, sent, heard)


SCENARIOS = {
    "py_py": scenario_py_py,
    "py_zmesh": scenario_py_zmesh,
    "zmesh_py": scenario_zmesh_py,
    "zmesh_zmesh": scenario_zmesh_zmesh,
    "disconnect": scenario_disconnect,
    "mmi": scenario_mmi,
    "heartbeat": scenario_heartbeat,
}


def run_scenario(zmesh, name):
    env = Env(zmesh)
    t0 = time.monotonic()
    ok = False
    try:
        signal.alarm(SCENARIO_TIMEOUT)
        try:
            detail = SCENARIOS[name](env)
        finally:
            signal.alarm(0)
        ok = True
        print("PASS %s (%.2f s): %s" % (name, time.monotonic() - t0, detail), flush=True)
    except Failure as e:
        print("FAIL %s: %s" % (name, e), flush=True)
    except ScenarioTimeout:
        print("FAIL %s: no result within %d s" % (name, SCENARIO_TIMEOUT), flush=True)
        traceback.print_exc()
    except Exception as e:  # noqa: BLE001 - any error (MdpTimeout too) is a failure, with a trace
        print("FAIL %s: %s: %s" % (name, type(e).__name__, e), flush=True)
        traceback.print_exc()
    finally:
        clean = env.close()
        if not ok:
            for p in env.processes:
                log = p.log()
                if log:
                    print("---- %s stderr (last 3000 chars) ----\n%s" % (p.name, log[-3000:]))
    if not clean:
        print("FAIL %s: a python worker thread did not stop" % name, flush=True)
    return ok and clean


def run_cli_scenario(scenarios, make_env):
    """The main() of a script whose scenarios each take an env with close() and processes:
    parses --zmesh and one scenario name, runs it, prints PASS or FAIL with the processes' logs,
    and always closes the env. Returns the exit code."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--zmesh", required=True)
    ap.add_argument("scenario", choices=sorted(scenarios))
    args = ap.parse_args()
    env = make_env(args.zmesh)
    try:
        result = scenarios[args.scenario](env)
        print("PASS %s: %s" % (args.scenario, result))
        return 0
    except Exception as e:  # noqa: BLE001 - every failure is reported the same way
        print("FAIL %s: %s" % (args.scenario, e))
        if not isinstance(e, Failure):
            traceback.print_exc()
        for p in env.processes:
            log = p.log()
            if log:
                print("--- %s log ---\n%s" % (p.name, log[-3000:]))
        return 1
    finally:
        env.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--zmesh", required=True, help="path to the zmesh CLI")
    ap.add_argument("scenarios", nargs="+", choices=sorted(SCENARIOS) + ["all"])
    args = ap.parse_args()
    if not os.access(args.zmesh, os.X_OK):
        print("FAIL: %s is not an executable" % args.zmesh)
        return 1

    def on_alarm(signum, frame):
        raise ScenarioTimeout()
    signal.signal(signal.SIGALRM, on_alarm)

    names = sorted(SCENARIOS) if "all" in args.scenarios else args.scenarios
    results = [run_scenario(args.zmesh, n) for n in names]
    return 0 if all(results) else 1


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # never wait at exit on a worker thread that failed to stop
