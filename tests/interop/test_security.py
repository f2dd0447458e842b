# SPDX-License-Identifier: MPL-2.0
"""test_security.py - CURVE and ZAP on the broker, end to end, through the CLI (docs/security.md).

Usage: test_security.py --zmesh PATH/TO/zmesh SCENARIO

Each scenario makes its keys with `zmesh keygen` (and, where it says so, with pyzmq's
zmq.auth.create_certificates), starts its own `zmesh broker --curve-secret ... --allow DIR` on
tcp://127.0.0.1:*, and drives it with zmesh's CLI and with plain python3-zmq MDP/0.1 peers that
use CURVE through pyzmq alone. Every process is stopped at the end, also on failure.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import zmq
import zmq.auth

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mdp_peers import MdpClient, MdpTimeout, MdpWorker, start_worker_thread  # noqa: E402
from test_interop import Broker, Failure, Process, check, run_cli_scenario  # noqa: E402

CLI_TIMEOUT = 30


class Env:
    def __init__(self, zmesh):
        self.zmesh = zmesh
        self.ctx = zmq.Context()
        self.processes = []
        self.workers = []
        self.dir = tempfile.TemporaryDirectory()
        self.keys = self.path("keys")
        self.allowed = self.path("allowed")
        os.makedirs(self.allowed)
        self.broker = None

    def path(self, name):
        return os.path.join(self.dir.name, name)

    def cli(self, *args, timeout=CLI_TIMEOUT, env=None):
        return subprocess.run([self.zmesh, *args], stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=timeout, env=env)

    def keygen(self, name, allow=True):
        r = self.cli("keygen", name, "--dir", self.keys)
        check(r.returncode == 0, "zmesh keygen %s failed: %s" % (name, r.stderr.decode()))
        if allow:
            self.allow(self.public(name))
        return self.public(name), self.secret(name)

    def public(self, name):
        return os.path.join(self.keys, name + ".key")

    def secret(self, name):
        return os.path.join(self.keys, name + ".key_secret")

    def allow(self, public_file):
        shutil.copy(public_file, self.allowed)

    def disallow(self, name):
        os.remove(os.path.join(self.allowed, name + ".key"))

    def start_broker(self, *extra):
        self.keygen("broker", allow=False)
        self.broker = Broker(self.zmesh, "--curve-secret", self.secret("broker"),
                             "--allow", self.allowed, "--heartbeat-ms", "500", *extra)
        self.processes.append(self.broker)
        return self.broker

    def curve_flags(self, name, server="broker"):
        return ["--curve-server-key", self.public(server), "--curve-key", self.secret(name)]

    def request(self, name, service, body, *extra, server="broker"):
        return self.cli("request", "--broker", self.broker.endpoint, "--service", service,
                        *self.curve_flags(name, server), *extra, body)

    def zmesh_worker(self, name, service):
        # The keys come from the environment here, as a script would set them once.
        env = dict(os.environ, ZMESH_CURVE_SERVER_KEY=self.public("broker"),
                   ZMESH_CURVE_KEY=self.secret(name))
        p = Process("zmesh worker", [self.zmesh, "worker", "--broker", self.broker.endpoint,
                                     "--service", service, "--echo", "--heartbeat-ms", "500"],
                    env=env)
        self.processes.append(p)
        return p

    def curve_setup(self, public_file, secret_file, server_public_file):
        """A pyzmq socket hook: CURVE client keys read with zmq.auth (pyzmq alone)."""
        pub, sec = zmq.auth.load_certificate(secret_file)
        server_pub, _ = zmq.auth.load_certificate(server_public_file)

        def setup(sock):
            sock.curve_publickey = pub
            sock.curve_secretkey = sec
            sock.curve_serverkey = server_pub
        return setup

    def py_worker(self, service, setup):
        w = MdpWorker(self.ctx, self.broker.endpoint, service, heartbeat=0.5,
                      socket_setup=setup)
        self.workers.append((w, start_worker_thread(w)))
        return w

    def stats(self, name="alice"):
        r = self.cli("stats", "--broker", self.broker.endpoint, *self.curve_flags(name))
        check(r.returncode == 0, "zmesh stats failed: %s" % r.stderr.decode(errors="replace"))
        out = {}
        for line in r.stdout.decode().splitlines():
            key, value = line.split()
            out[key] = int(value)
        return out

    def close(self):
        for w, t in self.workers:
            w.stop()
            t.join(3)
        for p in self.processes:
            p.close()
        self.ctx.destroy(linger=0)
        self.dir.cleanup()


def served(r, body):
    return r.returncode == 0 and r.stdout.decode().strip() == body


def scenario_served(env):
    """zmesh worker, zmesh request, a pyzmq client with zmesh keys, a pyzmq worker with pyzmq keys."""
    env.keygen("alice")
    env.keygen("worker")
    env.keygen("pyclient")
    # pyzmq's own certificates, allowed as they are.
    pub, sec = zmq.auth.create_certificates(env.keys, "pyworker")
    os.chmod(sec, 0o600)
    env.allow(pub)
    env.start_broker()
    env.zmesh_worker("worker", "echo")
    r = env.request("alice", "echo", "hello over curve", "--timeout-ms", "3000")
    check(served(r, "hello over curve"), "zmesh request was not served: rc=%d %s %s"
          % (r.returncode, r.stdout.decode(), r.stderr.decode()))
    # A plain MDP/0.1 client in python3-zmq, CURVE from pyzmq, keys from zmesh keygen.
    c = MdpClient(env.ctx, env.broker.endpoint, timeout=3, retries=1,
                  socket_setup=env.curve_setup(env.public("pyclient"), env.secret("pyclient"),
                                               env.public("broker")))
    reply = c.request("echo", b"from pyzmq")
    c.close()
    check(reply == [b"from pyzmq"], "pyzmq client got %r" % reply)
    # A plain MDP/0.1 worker in python3-zmq with keys made by pyzmq.
    w = env.py_worker("py.echo", env.curve_setup(pub, sec, env.public("broker")))
    r = env.request("alice", "py.echo", "to the python worker", "--timeout-ms", "3000")
    check(served(r, "to the python worker"), "the pyzmq worker did not serve: rc=%d %s"
          % (r.returncode, r.stderr.decode()))
    check(w.requests == 1, "pyzmq worker saw %d requests" % w.requests)
    s = env.stats()
    check(s["connections_refused"] == 0, "refusals: %d" % s["connections_refused"])
    return "zmesh and pyzmq peers served; %d connections admitted" % s["connections_admitted"]


def scenario_refused(env):
    """Unknown key, wrong server key and a plain (NULL) peer get nothing."""
    env.keygen("alice")
    env.keygen("worker")
    env.keygen("mallory", allow=False)
    env.keygen("impostor", allow=False)  # plays a server key that is not the broker's
    env.start_broker()
    env.zmesh_worker("worker", "echo")
    check(served(env.request("alice", "echo", "warm", "--timeout-ms", "3000"), "warm"),
          "alice was not served")
    r = env.request("mallory", "echo", "let me in", "--timeout-ms", "500", "--retries", "1")
    check(r.returncode != 0 and b"let me in" not in r.stdout, "an unknown key was served")
    check(b"tcp://" in r.stderr, "the timeout does not name the endpoint: %s" % r.stderr.decode())
    r = env.request("alice", "echo", "wrong server", "--timeout-ms", "500", "--retries", "1",
                    server="impostor")
    check(r.returncode != 0, "a client with the wrong server key was served")
    plain = MdpClient(env.ctx, env.broker.endpoint, timeout=0.5, retries=1)
    try:
        plain.request("echo", b"plain")
        raise Failure("a NULL (plain) client was served")
    except MdpTimeout:
        pass
    finally:
        plain.close()
    s = env.stats()
    check(s["connections_refused"] >= 1, "no refusal counted")
    check(s["requests"] == 2, "requests reached the broker from refused peers: %d" % s["requests"])
    return "unknown key, wrong server key and NULL refused (%d refusals)" % s["connections_refused"]


def scenario_sighup(env):
    """SIGHUP adds a key and removes another, without a restart."""
    env.keygen("alice")
    env.keygen("worker")
    env.keygen("bob", allow=False)
    env.start_broker()
    env.zmesh_worker("worker", "echo")
    check(served(env.request("alice", "echo", "a1", "--timeout-ms", "3000"), "a1"), "alice")
    r = env.request("bob", "echo", "b1", "--timeout-ms", "500", "--retries", "1")
    check(r.returncode != 0, "bob was served before being allowed")
    env.allow(env.public("bob"))
    env.disallow("alice")
    env.broker.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while True:
        r = env.request("bob", "echo", "b2", "--timeout-ms", "500", "--retries", "1")
        if served(r, "b2"):
            break
        check(time.monotonic() < deadline, "bob not served 10 s after SIGHUP: %s"
              % r.stderr.decode())
    r = env.request("alice", "echo", "a2", "--timeout-ms", "500", "--retries", "1")
    check(r.returncode != 0, "alice still served after her key was removed")
    check(env.broker.proc.poll() is None, "the broker exited on SIGHUP")
    return "bob admitted and alice refused after SIGHUP, same broker process"


class Relay:
    """A TCP relay between a client and the broker that keeps every byte it carries: what a
    capture on the loopback interface would see of that connection."""

    def __init__(self, target_port):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.target = target_port
        self.captured = bytearray()
        self.lock = threading.Lock()
        self.stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        self.listener.settimeout(0.2)
        while not self.stop:
            try:
                a, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return  # closed by close()
            b = socket.create_connection(("127.0.0.1", self.target))
            for src, dst in ((a, b), (b, a)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self.lock:
                    self.captured += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.stop = True
        self.listener.close()


def scenario_capture(env):
    """With CURVE on, no payload crosses the wire in clear text (and without it, it does)."""
    env.keygen("alice")
    env.keygen("worker")
    env.start_broker()
    env.zmesh_worker("worker", "echo")
    port = int(env.broker.endpoint.rsplit(":", 1)[1])
    secret_body = "ORDER-4711-price-1234.56-qty-250"
    relay = Relay(port)
    try:
        r = env.cli("request", "--broker", "tcp://127.0.0.1:%d" % relay.port, "--service", "echo",
                    *env.curve_flags("alice"), "--timeout-ms", "3000", secret_body)
        check(served(r, secret_body), "not served through the relay: %s" % r.stderr.decode())
        with relay.lock:
            wire = bytes(relay.captured)
    finally:
        relay.close()
    check(len(wire) > 200, "the relay captured only %d bytes" % len(wire))
    check(secret_body.encode() not in wire, "the body crossed the wire in clear text")
    check(b"echo" not in wire, "the service name crossed the wire in clear text")
    # The control: the same relay around a plain broker sees the body, so the capture works.
    plain = Broker(env.zmesh)
    env.processes.append(plain)
    w = Process("plain worker", [env.zmesh, "worker", "--broker", plain.endpoint, "--service",
                                 "echo", "--echo"])
    env.processes.append(w)
    relay = Relay(int(plain.endpoint.rsplit(":", 1)[1]))
    try:
        r = env.cli("request", "--broker", "tcp://127.0.0.1:%d" % relay.port, "--service", "echo",
                    "--timeout-ms", "3000", secret_body)
        check(served(r, secret_body), "plain broker did not serve: %s" % r.stderr.decode())
        with relay.lock:
            clear = bytes(relay.captured)
    finally:
        relay.close()
    check(secret_body.encode() in clear, "the control capture did not see the plain body")
    return "%d bytes captured with CURVE, body absent; present without it" % len(wire)


def scenario_secret_mode(env):
    """A broker given a secret key that others can read exits non-zero and says so."""
    env.keygen("broker", allow=False)
    os.chmod(env.secret("broker"), 0o644)
    r = env.cli("broker", "--mdp", "tcp://127.0.0.1:*", "--curve-secret", env.secret("broker"),
                "--allow", env.allowed, timeout=10)
    err = r.stderr.decode()
    check(r.returncode != 0, "the broker started with a 0644 secret key")
    check("readable by others" in err and env.secret("broker") in err,
          "the message does not say what is wrong: %r" % err)
    return "exit %d: %s" % (r.returncode, err.strip())


def start_pubsub_broker(env, *extra):
    """A CURVE broker with the forwarder; returns (xsub, xpub) endpoints."""
    env.keygen("broker", allow=False)
    p = Process("broker", [env.zmesh, "broker", "--mdp", "tcp://127.0.0.1:*", "--xsub",
                           "tcp://127.0.0.1:*", "--xpub", "tcp://127.0.0.1:*", "--curve-secret",
                           env.secret("broker"), "--allow", env.allowed, *extra],
                stdout=subprocess.PIPE)
    env.processes.append(p)
    lines = []
    deadline = time.monotonic() + 10
    while len(lines) < 3:
        check(time.monotonic() < deadline, "the broker printed %r, not three endpoints" % lines)
        line = p.proc.stdout.readline()
        check(line, "the broker exited at start (rc=%s)" % p.proc.poll())
        lines.append(line.decode().strip())
    env.mdp_endpoint = lines[0]
    return lines[1], lines[2]


def pubsub_stats(env, name):
    r = env.cli("stats", "--broker", env.mdp_endpoint, *env.curve_flags(name))
    check(r.returncode == 0, "zmesh stats failed: %s" % r.stderr.decode(errors="replace"))
    return {k: int(v) for k, v in (line.split() for line in r.stdout.decode().splitlines())}


def py_subscriber(env, name, xpub, topic):
    s = env.ctx.socket(zmq.SUB)
    s.setsockopt(zmq.LINGER, 0)
    env.curve_setup(env.public(name), env.secret(name), env.public("broker"))(s)
    s.setsockopt(zmq.SUBSCRIBE, topic)
    s.connect(xpub)
    return s


def drain(sock, quiet_ms=500):
    topics = []
    while sock.poll(quiet_ms):
        topics.append(sock.recv_multipart()[0])
    return topics


def scenario_topic_acl(env):
    """The access list on pub/sub through the CLI: a topic prefix refused to one subscriber
    (zmesh sub waits, receives nothing and says so) and allowed to another; a publication on a
    topic its key may not publish dropped; both counted in zmesh stats."""
    for name in ("feed", "mallory", "alice", "bob", "ops"):
        env.keygen(name)
    acl = env.path("acl.conf")
    with open(acl, "w") as f:
        f.write("feed publish prices.*\nmallory publish news.*\n"
                "alice subscribe prices.*\nbob subscribe news.*\nops admin\n")
    xsub, xpub = start_pubsub_broker(env, "--acl", acl)
    alice = Process("zmesh sub alice", [env.zmesh, "sub", "--connect", xpub, "--topic",
                                        "prices.", "--count", "1", "--timeout-ms", "15000",
                                        *env.curve_flags("alice")], stdout=subprocess.PIPE)
    bob = Process("zmesh sub bob", [env.zmesh, "sub", "--connect", xpub, "--topic", "prices.",
                                    "--count", "1", "--timeout-ms", "4000",
                                    *env.curve_flags("bob")], stdout=subprocess.PIPE)
    env.processes += [alice, bob]
    watcher = py_subscriber(env, "alice", xpub, b"prices.")
    time.sleep(1.0)  # the subscriptions travel up to the forwarder
    r = env.cli("pub", "--connect", xsub, "--topic", "prices.forged", "--count", "5", "--rate",
                "50", "--linger-ms", "200", *env.curve_flags("mallory"), "forged")
    check(r.returncode == 0, "zmesh pub (mallory) failed: %s" % r.stderr.decode())
    body = "quote-EUR-1.0842"
    r = env.cli("pub", "--connect", xsub, "--topic", "prices.eur", "--count", "10", "--rate",
                "20", *env.curve_flags("feed"), body)
    check(r.returncode == 0, "zmesh pub (feed) failed: %s" % r.stderr.decode())
    out, _ = alice.proc.communicate(timeout=20)
    check(alice.proc.returncode == 0 and body in out.decode(),
          "alice did not get the allowed topic: rc=%s %r" % (alice.proc.returncode, out))
    bout, _ = bob.proc.communicate(timeout=20)
    bob.err.seek(0)
    berr = bob.err.read()
    check(bob.proc.returncode != 0 and body not in bout.decode(),
          "bob received a topic the access list refuses: rc=%s %r" % (bob.proc.returncode, bout))
    check(b"4000" in berr or b"no message" in berr.lower() or b"timed out" in berr.lower(),
          "bob's zmesh sub did not say what it waited for: %r" % berr)
    seen = drain(watcher)
    check(b"prices.eur" in seen, "the pyzmq subscriber with alice's key got %r" % seen)
    check(b"prices.forged" not in seen, "mallory's refused publication was forwarded")
    watcher.close()
    st = pubsub_stats(env, "ops")
    check(st.get("subscriptions_forbidden", 0) >= 1, "no refused subscription counted: %r" % st)
    check(st.get("publications_forbidden", 0) == 5, "refused publications counted: %r" % st)
    return "prices. refused to bob and served to alice; mallory's forged prices dropped (5)"


def scenario_publish_rate(env):
    """--max-key-publish-rate: a key publishing far over its rate is throttled; another key's
    messages all arrive; the drops are counted."""
    for name in ("loud", "quiet", "alice", "ops"):
        env.keygen(name)
    acl = env.path("acl.conf")
    with open(acl, "w") as f:
        f.write("* publish *\n* subscribe *\nops admin\n")
    xsub, xpub = start_pubsub_broker(env, "--acl", acl, "--max-key-publish-rate", "50")
    watcher = py_subscriber(env, "alice", xpub, b"t.")
    watcher.setsockopt(zmq.RCVHWM, 0)
    time.sleep(1.0)
    r = env.cli("pub", "--connect", xsub, "--topic", "t.loud", "--count", "1000", "--rate", "0",
                "--linger-ms", "500", *env.curve_flags("loud"), "x")
    check(r.returncode == 0, "zmesh pub (loud) failed: %s" % r.stderr.decode())
    r = env.cli("pub", "--connect", xsub, "--topic", "t.quiet", "--count", "20", "--rate", "40",
                *env.curve_flags("quiet"), "y")
    check(r.returncode == 0, "zmesh pub (quiet) failed: %s" % r.stderr.decode())
    seen = drain(watcher)
    loud, quiet = seen.count(b"t.loud"), seen.count(b"t.quiet")
    check(quiet == 20, "the quiet key lost messages: %d of 20" % quiet)
    check(50 <= loud < 1000, "the loud key was not throttled to its rate: %d of 1000" % loud)
    st = pubsub_stats(env, "ops")
    check(st.get("publications_throttled", 0) == 1000 - loud, "throttled count: %r" % st)
    watcher.close()
    return "loud key: %d of 1000 forwarded at 50/s; quiet key: 20 of 20" % loud


def scenario_pubsub(env):
    """Publisher and subscribers through the CURVE forwarder: zmesh pub/sub and pyzmq with keys
    are served; a plain (NULL) subscriber and an unknown key receive nothing."""
    env.keygen("publisher")
    env.keygen("subscriber")
    env.keygen("pysub")
    env.keygen("mallory", allow=False)
    xsub, xpub = start_pubsub_broker(env)

    def pysub(setup):
        s = env.ctx.socket(zmq.SUB)
        s.setsockopt(zmq.LINGER, 0)
        if setup:
            setup(s)
        s.setsockopt(zmq.SUBSCRIBE, b"prices")
        s.connect(xpub)
        return s

    sub = Process("zmesh sub", [env.zmesh, "sub", "--connect", xpub, "--topic", "prices",
                                "--count", "1", "--timeout-ms", "15000",
                                *env.curve_flags("subscriber")], stdout=subprocess.PIPE)
    env.processes.append(sub)
    py = pysub(env.curve_setup(env.public("pysub"), env.secret("pysub"), env.public("broker")))
    plain = pysub(None)
    intruder = pysub(env.curve_setup(env.public("mallory"), env.secret("mallory"),
                                     env.public("broker")))
    time.sleep(1.0)  # the subscriptions travel up to the forwarder
    body = "ticker-XYZ-bid-42"
    r = env.cli("pub", "--connect", xsub, "--topic", "prices.xyz", "--count", "20", "--rate",
                "20", *env.curve_flags("publisher"), body)
    check(r.returncode == 0, "zmesh pub failed: %s" % r.stderr.decode())
    out, _ = sub.proc.communicate(timeout=20)
    check(sub.proc.returncode == 0 and body in out.decode(),
          "zmesh sub did not get the message: rc=%s %r" % (sub.proc.returncode, out))
    check(py.poll(3000), "the pyzmq CURVE subscriber got nothing")
    got = py.recv_multipart()
    check(got[0] == b"prices.xyz" and got[-1] == body.encode(), "pyzmq got %r" % got)
    check(not plain.poll(200), "a plain (NULL) subscriber received a message")
    check(not intruder.poll(200), "an unknown key received a message")
    # An unknown key cannot publish either: the pyzmq subscriber sees nothing of it.
    while py.poll(300):
        py.recv_multipart()  # the rest of the 20 above
    r = env.cli("pub", "--connect", xsub, "--topic", "prices.xyz", "--count", "5", "--rate",
                "20", "--linger-ms", "200", *env.curve_flags("mallory"), "forged")
    check(not py.poll(500), "a publication with an unknown key was forwarded")
    for s_ in (py, plain, intruder):
        s_.close()
    return "zmesh and pyzmq subscribers served over CURVE; NULL and unknown key got nothing"


def scenario_titanic(env):
    """Durable requests through a Titanic node and a CURVE broker, all with keys; zmesh dlq and
    the directory of the broker over CURVE too."""
    env.keygen("alice")
    env.keygen("worker")
    env.keygen("titanic")
    env.start_broker()
    env.zmesh_worker("worker", "echo")
    store = env.path("titanic.db")
    t = Process("zmesh titanic", [env.zmesh, "titanic", "--broker", env.broker.endpoint, "--store",
                                  store, "--heartbeat-ms", "500", *env.curve_flags("titanic")])
    env.processes.append(t)
    r = env.request("alice", "echo", "stored first", "--durable", "--timeout-ms", "20000")
    check(served(r, "stored first"), "durable request not served over CURVE: rc=%d %s"
          % (r.returncode, r.stderr.decode()))
    check(b"stored" in r.stderr, "no durable id on stderr: %s" % r.stderr.decode())
    r = env.cli("dlq", "list", "--broker", env.broker.endpoint, *env.curve_flags("alice"))
    check(r.returncode == 0, "zmesh dlq list over CURVE failed: %s" % r.stderr.decode())
    r = env.cli("dlq", "list", "--broker", env.broker.endpoint, "--timeout-ms", "500")
    check(r.returncode != 0, "zmesh dlq without keys was answered by a CURVE broker")
    return "a durable request stored and answered through Titanic, all over CURVE"


def scenario_acl(env):
    """The access list through the CLI: 403 for a service a key may not call, a worker refused
    a service it may not serve, and SIGHUP re-reading the list."""
    env.keygen("alice")
    env.keygen("bob")
    env.keygen("worker")
    env.keygen("rogue")
    acl = env.path("acl.conf")
    with open(acl, "w") as f:
        f.write("alice call echo\nworker serve echo\n")
    env.start_broker("--acl", acl)
    env.zmesh_worker("worker", "echo")
    check(served(env.request("alice", "echo", "a1", "--timeout-ms", "3000"), "a1"), "alice")
    r = env.request("bob", "echo", "b1", "--timeout-ms", "3000", "--retries", "1")
    err = r.stderr.decode()
    check(r.returncode != 0 and "403" in err and "echo" in err,
          "bob was not refused with 403: rc=%d %s" % (r.returncode, err))
    rogue = env.cli("worker", "--broker", env.broker.endpoint, "--service", "echo", "--echo",
                    *env.curve_flags("rogue"), timeout=20)
    rerr = rogue.stderr.decode()
    check(rogue.returncode != 0 and "access list" in rerr,
          "a worker the list does not allow was not refused: rc=%d %s" % (rogue.returncode, rerr))
    with open(acl, "w") as f:
        f.write("alice call echo\nbob call echo\nworker serve echo\n")
    env.broker.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while not served(env.request("bob", "echo", "b2", "--timeout-ms", "1000", "--retries", "1"),
                     "b2"):
        check(time.monotonic() < deadline, "bob still refused 10 s after SIGHUP")
    return "403 for bob, the rogue worker refused, and bob allowed after SIGHUP"


def scenario_directory(env):
    """The broker's directory over CURVE: a brokerless publisher registers its endpoint with
    keys, a subscriber resolves it with keys and then hears the publisher directly; without
    keys the directory does not answer."""
    env.keygen("alice")
    env.keygen("feed")
    env.start_broker()
    pub = Process("zmesh pub", [env.zmesh, "pub", "--bind", "tcp://127.0.0.1:*", "--topic",
                                "prices.eu", "--register", "prices-feed", "--broker",
                                env.broker.endpoint, "--count", "100", "--rate", "10",
                                *env.curve_flags("feed"), "quote-1.2345"], stdout=subprocess.PIPE)
    env.processes.append(pub)
    check(pub.proc.stdout.readline().startswith(b"tcp://127.0.0.1:"), "pub printed no endpoint")
    time.sleep(0.5)  # the registration goes out as the publisher starts
    r = env.cli("sub", "--resolve", "prices-feed", "--broker", env.broker.endpoint, "--topic",
                "prices", "--count", "1", "--timeout-ms", "10000", *env.curve_flags("alice"),
                timeout=30)
    check(r.returncode == 0 and b"quote-1.2345" in r.stdout,
          "the subscriber did not resolve and hear the publisher: rc=%d %s %s"
          % (r.returncode, r.stdout.decode(), r.stderr.decode()))
    r = env.cli("sub", "--resolve", "prices-feed", "--broker", env.broker.endpoint, "--topic",
                "prices", "--count", "1", "--timeout-ms", "3000", timeout=30)
    check(r.returncode != 0, "the directory answered a client without keys")
    return "registered and resolved through the directory over CURVE"


SCENARIOS = {name[len("scenario_"):]: fn for name, fn in globals().items()
             if name.startswith("scenario_")}


def main():
    return run_cli_scenario(SCENARIOS, Env)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    sys.exit(main())
