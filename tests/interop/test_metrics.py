# SPDX-License-Identifier: MPL-2.0
"""test_metrics.py - the broker's HTTP endpoint (`zmesh broker --http`), against real tools.

Usage: test_metrics.py --zmesh PATH/TO/zmesh [--artifacts DIR] SCENARIO

  prometheus   a real Prometheus server (Debian `prometheus`) on a free loopback port, with a
               scrape configuration written here, scrapes a broker while a client sends requests;
               its HTTP API must then show the target up and the request counters equal to the
               requests sent; `promtool check metrics` must accept /metrics.
  endpoints    /healthz, /api/status, /metrics and an unknown path, read with urllib, and a bad
               --http address refused with one line.
  titanic      `zmesh titanic --http`: its counters and the store's counts after durable requests.
  status_page  headless Chromium (Debian `chromium`) loads / while requests flow, and the page,
               without being reloaded, shows the service, its worker and a request count that
               changed between two of its refreshes; a screenshot is saved in --artifacts.

Every process is started on a private port and stopped at the end, also on failure. The load
comes from a plain python3-zmq MDP/0.1 client, so the counts are the test's own, not zmesh's.
"""
import argparse
import json
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request

import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_interop import Failure, Process, check  # noqa: E402

STARTUP_TIMEOUT = 20.0  # a node printing its endpoint or URL (slow under sanitizers and load)


class HttpBroker(Process):
    """`zmesh broker --http 127.0.0.1:0`: stdout gives the MDP endpoint, then the HTTP URL."""

    def __init__(self, zmesh, *extra):
        super().__init__("broker", [zmesh, "broker", "--mdp", "tcp://127.0.0.1:*", "--http",
                                    "127.0.0.1:0", "--heartbeat-ms", "500", *extra],
                         stdout=subprocess.PIPE)
        try:
            lines = self._read_lines(2)
        except Failure:
            self.close()  # not yet in the scenario's process list
            raise
        self.endpoint, self.url = lines
        check(self.endpoint.startswith("tcp://127.0.0.1:"), "no MDP endpoint: %r" % self.endpoint)
        check(re.fullmatch(r"http://127\.0\.0\.1:\d+/", self.url) is not None,
              "no HTTP URL on the broker's second line: %r" % self.url)

    def _read_lines(self, n):
        fd = self.proc.stdout.fileno()
        buf = b""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while buf.count(b"\n") < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure("broker printed %r within %.0f s, not %d lines"
                              % (buf, STARTUP_TIMEOUT, n))
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise Failure("broker exited at start (rc=%s): %s"
                                  % (self.proc.wait(), self.log()))
                buf += chunk
        return [line.decode().strip() for line in buf.split(b"\n")[:n]]


def http_get(url, timeout=5.0):
    """(status, body as str) of a GET; an HTTP error status is returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def free_port():
    """A loopback port nothing listens on now (for a server that cannot bind port 0 and say
    which port it got); the caller retries if another process takes it first."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Load:
    """A plain MDP/0.1 client (DEALER) that keeps `window` echo requests in flight until it has
    sent `total` (or, with total=None, until stop()), on a thread; counts what it sent and got."""

    def __init__(self, ctx, endpoint, total=None, window=20, service=b"echo"):
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.connect(endpoint)
        self.total, self.window, self.service = total, window, service
        self.sent = self.received = 0
        self.stopping = False
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            deadline = time.monotonic() + 120  # bounded whatever happens
            while time.monotonic() < deadline:
                more = not self.stopping and (self.total is None or self.sent < self.total)
                while more and self.sent - self.received < self.window:
                    self.sock.send_multipart([b"", b"MDPC01", self.service, b"%d" % self.sent])
                    self.sent += 1
                    more = not self.stopping and (self.total is None or self.sent < self.total)
                if not more and self.received == self.sent:
                    return
                if self.sock.poll(1000):
                    frames = self.sock.recv_multipart()
                    if frames[:3] != [b"", b"MDPC01", self.service]:
                        raise Failure("unexpected reply %r" % frames[:3])
                    self.received += 1
            raise Failure("load did not finish in 120 s (%d of %d answered)"
                          % (self.received, self.sent))
        except Exception as e:  # noqa: BLE001 - reported by join()
            self.error = e

    def stop(self):
        self.stopping = True

    def join(self, timeout=60):
        self.thread.join(timeout)
        check(not self.thread.is_alive(), "load still running after %d s" % timeout)
        self.sock.close()
        if self.error:
            raise self.error


class Env:
    def __init__(self, zmesh, artifacts):
        self.zmesh = zmesh
        self.artifacts = artifacts
        self.ctx = zmq.Context()
        self.processes = []
        self.dir = tempfile.TemporaryDirectory()
        self.broker = None

    def path(self, name):
        return os.path.join(self.dir.name, name)

    def start_broker(self, *extra):
        self.broker = HttpBroker(self.zmesh, *extra)
        self.processes.append(self.broker)
        return self.broker

    def start_worker(self, service="echo"):
        p = Process("zmesh worker", [self.zmesh, "worker", "--broker", self.broker.endpoint,
                                     "--service", service, "--echo"])
        self.processes.append(p)
        self.wait_status(lambda s: any(x["name"] == service and x["workers"] == 1
                                       for x in s["services"]),
                         "a worker of '%s' in /api/status" % service)
        return p

    def status(self):
        code, body = http_get(self.broker.url + "api/status")
        check(code == 200, "/api/status answered %d: %s" % (code, body[:200]))
        return json.loads(body)

    def wait_status(self, pred, what, timeout=15.0):
        deadline = time.monotonic() + timeout
        while True:
            s = self.status()
            if pred(s):
                return s
            if time.monotonic() >= deadline:
                raise Failure("not seen within %.0f s: %s; last status: %s"
                              % (timeout, what, json.dumps(s)[:600]))
            time.sleep(0.1)

    def close(self):
        for p in reversed(self.processes):
            p.close()
        self.ctx.destroy(linger=0)
        self.dir.cleanup()


def scenario_prometheus(env):
    for tool in ("prometheus", "promtool"):
        check(shutil.which(tool) is not None,
              "%s not found: install Debian's prometheus package (scripts/test does)" % tool)
    b = env.start_broker()
    env.start_worker()
    host_port = b.url[len("http://"):-1]
    config = env.path("prometheus.yml")
    with open(config, "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n"
                "scrape_configs:\n  - job_name: zmesh\n    static_configs:\n"
                "      - targets: ['%s']\n" % host_port)
    prom, api = None, None
    for attempt in range(3):  # the free port may be taken between free_port() and the bind
        port = free_port()
        api = "http://127.0.0.1:%d/api/v1/" % port
        prom = Process("prometheus", [
            "prometheus", "--config.file=" + config, "--web.listen-address=127.0.0.1:%d" % port,
            "--storage.tsdb.path=" + env.path("tsdb-%d" % attempt), "--log.level=warn"])
        env.processes.append(prom)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and prom.proc.poll() is None:
            try:
                if http_get(api + "status/buildinfo", timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        if prom.proc.poll() is None:
            break
    check(prom.proc.poll() is None, "prometheus did not start: %s" % prom.log()[-800:])

    # Load while Prometheus scrapes every second: 3,000 requests, 20 in flight.
    total = 3000
    load = Load(env.ctx, b.endpoint, total=total)
    load.join()
    check(load.received == total, "%d of %d requests answered" % (load.received, total))

    def query(expr):
        code, body = http_get(api + "query?query=" + urllib.request.quote(expr))
        check(code == 200, "Prometheus query %s answered %d: %s" % (expr, code, body[:300]))
        return json.loads(body)["data"]["result"]

    def value(expr):
        r = query(expr)
        return float(r[0]["value"][1]) if r else None

    # What Prometheus stored from its scrapes must come to exactly what was sent.
    want = {
        'up{job="zmesh"}': 1,
        "zmesh_broker_requests_total": total,
        'zmesh_service_requests_total{service="echo"}': total,
        'zmesh_service_replies_total{service="echo"}': total,
        'zmesh_service_latency_seconds_count{service="echo"}': total,
        'zmesh_service_workers{service="echo"}': 1,
    }
    deadline = time.monotonic() + 30
    while True:
        got = {expr: value(expr) for expr in want}
        if got == {k: float(v) for k, v in want.items()}:
            break
        if time.monotonic() >= deadline:
            raise Failure("Prometheus shows %s, expected %s" % (got, want))
        time.sleep(0.5)
    # A histogram quantile works on what was scraped: the median is within its buckets.
    median = value('histogram_quantile(0.5, zmesh_service_latency_seconds_bucket{service="echo"})')
    check(median is not None and 0 < median <= 10, "median latency from Prometheus: %r" % median)

    code, text = http_get(b.url + "metrics")
    check(code == 200, "/metrics answered %d" % code)
    r = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                       capture_output=True, timeout=30)
    check(r.returncode == 0, "promtool check metrics refused /metrics: %s %s"
          % (r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")))
    return "Prometheus scraped %d requests exactly, up=1, median %.6f s, promtool accepts" % (
        total, median)


def scenario_endpoints(env):
    b = env.start_broker()
    env.start_worker()
    code, body = http_get(b.url + "healthz")
    check(code == 200 and body == "ok\n", "/healthz: %d %r" % (code, body))
    load = Load(env.ctx, b.endpoint, total=500)
    load.join()
    s = env.wait_status(lambda s: s["totals"]["requests"] == 500 and s["services"][0]["replies"]
                        == 500, "500 requests and replies")
    check(s["node"] == "broker" and s["running"] is True, "status head: %r" % s)
    check(s["endpoints"] == [b.endpoint], "endpoints %r" % s["endpoints"])
    echo = s["services"][0]
    check(echo["name"] == "echo" and echo["workers"] == 1 and echo["queued"] == 0,
          "service %r" % echo)
    check(sum(echo["latency_counts"]) == 500, "latency counts %r" % echo["latency_counts"])
    check(len(echo["latency_counts"]) == len(s["latency_bounds"]) + 1, "histogram shape")
    code, text = http_get(b.url + "metrics")
    check(code == 200, "/metrics: %d" % code)
    check('zmesh_service_replies_total{service="echo"} 500\n' in text, "replies in /metrics")
    check('zmesh_service_latency_seconds_bucket{service="echo",le="+Inf"} 500\n' in text,
          "+Inf bucket in /metrics")
    code, body = http_get(b.url + "no-such-page")
    check(code == 404 and "/metrics" in body, "unknown path: %d %r" % (code, body))
    # A bad address is refused at start with one line naming it, and a non-zero exit.
    r = subprocess.run([env.zmesh, "broker", "--mdp", "tcp://127.0.0.1:*", "--http",
                        "127.0.0.1:99999"], stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=20)
    err = r.stderr.decode(errors="replace").strip()
    check(r.returncode != 0 and "127.0.0.1:99999" in err and len(err.splitlines()) == 1,
          "bad --http: rc %d, %r" % (r.returncode, err))
    host_port = b.url[len("http://"):-1]
    r = subprocess.run([env.zmesh, "broker", "--mdp", "tcp://127.0.0.1:*", "--http", host_port],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=20)
    err = r.stderr.decode(errors="replace").strip().splitlines()
    check(r.returncode == 1 and any(host_port in line and "cannot listen" in line
                                    for line in err),
          "--http on a port in use: rc %d, %r" % (r.returncode, err))
    return "healthz ok, status and metrics agree on 500 requests, 404 and bad addresses named"


def scenario_status_page(env):
    chromium = shutil.which("chromium")
    check(chromium is not None, "chromium not found: install Debian's chromium (scripts/test does)")
    b = env.start_broker()
    env.start_worker()
    load = Load(env.ctx, b.endpoint, total=None, window=5)  # flows until stopped
    try:
        env.wait_status(lambda s: s["totals"]["requests"] > 0, "requests flowing")
        base = [chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
                "--user-data-dir=" + env.path("chromium"), "--window-size=1100,1000"]
        # One page load; its own timer refreshes it from /api/status about once a second.
        r = subprocess.run(base + ["--virtual-time-budget=6000", "--dump-dom", b.url],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=90)
        dom = r.stdout.decode(errors="replace")
        check(r.returncode == 0 and "</html>" in dom,
              "chromium --dump-dom failed (rc %d): %s" % (r.returncode,
                                                          r.stderr.decode(errors="replace")[-600:]))
        if env.artifacts:
            os.makedirs(env.artifacts, exist_ok=True)
            shot = os.path.join(env.artifacts, "status_page.png")
            subprocess.run(base + ["--virtual-time-budget=4000", "--screenshot=" + shot, b.url],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=90)
            check(os.path.getsize(shot) > 1000, "no screenshot at %s" % shot)
    finally:
        load.stop()
    load.join()

    def text_of(element_id):
        m = re.search(r'id="%s"[^>]*>([^<]*)<' % re.escape(element_id), dom)
        check(m is not None, "no #%s in the page" % element_id)
        return m.group(1)

    refreshes = int(text_of("refreshes"))
    check(refreshes >= 2, "the page refreshed itself %d times, expected at least 2" % refreshes)
    first = int(text_of("first-requests"))
    latest = int(text_of("total-requests").replace(",", ""))
    check(latest > first, "request count %d did not change from %d between refreshes"
          % (latest, first))
    row = re.search(r'<tr data-service="echo">(.*?)</tr>', dom)
    check(row is not None, "no row for service echo in the services table")
    workers = re.search(r'<td class="workers">([^<]*)</td>', row.group(1))
    check(workers is not None and workers.group(1) == "1", "echo's workers cell: %r"
          % (workers.group(1) if workers else None))
    check("points=\"\"" not in re.search(r'<polyline id="rate-line"[^>]*>', dom).group(0),
          "the rate chart has no points")
    return "page refreshed %d times without reload, requests %d -> %d, echo has 1 worker" % (
        refreshes, first, latest)


def scenario_titanic(env):
    """`zmesh titanic --http`: /metrics counts the durable requests stored and replied and the
    store's pending ones; /api/status and /healthz agree; promtool accepts the text."""
    b = env.start_broker()
    env.start_worker()
    titanic = Process("titanic", [env.zmesh, "titanic", "--broker", b.endpoint, "--store",
                                  env.path("titanic.db"), "--http", "127.0.0.1:0",
                                  "--heartbeat-ms", "500"], stdout=subprocess.PIPE)
    env.processes.append(titanic)
    fd = titanic.proc.stdout.fileno()
    ready, _, _ = select.select([fd], [], [], STARTUP_TIMEOUT)
    check(ready, "titanic printed no URL within %.0f s" % STARTUP_TIMEOUT)
    url = os.read(fd, 4096).decode().strip()
    check(re.fullmatch(r"http://127\.0\.0\.1:\d+/", url) is not None, "titanic printed %r" % url)
    n = 5
    for i in range(n):
        r = subprocess.run([env.zmesh, "request", "--broker", b.endpoint, "--service", "echo",
                            "--durable", "--timeout-ms", "20000", "body %d" % i],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        check(r.returncode == 0 and r.stdout.decode() == "body %d\n" % i,
              "durable request %d: rc %d, %r %r" % (i, r.returncode, r.stdout, r.stderr))

    def sample(text, name):
        m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
        return int(m.group(1)) if m else None

    deadline = time.monotonic() + 15
    while True:
        code, text = http_get(url + "metrics")
        check(code == 200, "/metrics answered %d" % code)
        got = {name: sample(text, name) for name in (
            "zmesh_titanic_stored_total", "zmesh_titanic_replied_total", "zmesh_titanic_pending",
            "zmesh_titanic_up")}
        if got == {"zmesh_titanic_stored_total": n, "zmesh_titanic_replied_total": n,
                   "zmesh_titanic_pending": 0, "zmesh_titanic_up": 1}:
            break
        if time.monotonic() >= deadline:
            raise Failure("titanic /metrics shows %s" % got)
        time.sleep(0.2)
    r = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                       capture_output=True, timeout=30)
    check(r.returncode == 0, "promtool refused titanic's /metrics: %s" % r.stderr.decode())
    code, body = http_get(url + "api/status")
    status = json.loads(body)
    check(status["node"] == "titanic" and status["totals"]["stored"] == n
          and status["store_counts"]["pending"] == 0, "titanic /api/status: %r" % status)
    check(http_get(url + "healthz") == (200, "ok\n"), "titanic /healthz")
    # zmesh titanic status|reply ID: a request submitted by hand through titanic.request (TSP),
    # so that it is not closed, then its state, its reply (closing it), and it is gone.
    r = subprocess.run([env.zmesh, "request", "--broker", b.endpoint, "--service",
                        "titanic.request", "--frame", "echo", "--frame", "by hand"],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    lines = r.stdout.decode().split()
    check(r.returncode == 0 and lines[0] == "200" and len(lines[1]) == 32,
          "titanic.request: %r %r" % (r.stdout, r.stderr))
    req_id = lines[1]

    def titanic_cli(*args):
        return subprocess.run([env.zmesh, "titanic", *args, "--broker", b.endpoint],
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=30)

    deadline = time.monotonic() + 15
    while titanic_cli("status", req_id).stdout.decode() != "replied\n":
        check(time.monotonic() < deadline, "titanic status never said replied")
        time.sleep(0.2)
    st = json.loads(titanic_cli("status", req_id, "--json").stdout)
    check(st == {"id": req_id, "state": "replied"}, "titanic status --json: %r" % st)
    rep = titanic_cli("reply", req_id, "--close")
    check(rep.returncode == 0 and rep.stdout.decode() == "by hand\n",
          "titanic reply: %r %r" % (rep.stdout, rep.stderr))
    gone = titanic_cli("status", req_id.upper())
    check(gone.returncode == 1 and gone.stdout.decode() == "unknown\n",
          "titanic status after close: %r" % gone.stdout)
    bad = titanic_cli("reply", "xyz")
    check(bad.returncode == 2 and "32 hex digits" in bad.stderr.decode(), "bad id: %r" % bad.stderr)
    return ("titanic /metrics: %d stored, %d replied, 0 pending; promtool accepts; titanic "
            "status/reply ID" % (n, n))


SCENARIOS = {
    "prometheus": scenario_prometheus,
    "endpoints": scenario_endpoints,
    "status_page": scenario_status_page,
    "titanic": scenario_titanic,
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--zmesh", required=True)
    ap.add_argument("--artifacts", default="")
    ap.add_argument("scenario", choices=sorted(SCENARIOS))
    args = ap.parse_args()
    env = Env(args.zmesh, args.artifacts)
    try:
        result = SCENARIOS[args.scenario](env)
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


if __name__ == "__main__":
    sys.exit(main())
