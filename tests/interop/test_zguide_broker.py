# SPDX-License-Identifier: MPL-2.0
"""test_zguide_broker.py - `zmesh worker` behind the zguide's C reference broker (mdbroker.c).

Usage: test_zguide_broker.py --zmesh PATH/TO/zmesh --compat-header H [--zguide-dir DIR]

The broker is built here, at test time, from a zguide checkout that is never part of this
repository: $ZMESH_ZGUIDE_DIR if set, else --zguide-dir (CMake passes its cache variable of the
same name). Either may name the checkout or its examples/C directory. With neither the test
prints SKIP and exits 77 (ctest SKIP_RETURN_CODE). mdbroker.c is compiled unmodified against
Debian's czmq 4 (libczmq-dev), with zguide_czmq_compat.h force-included for the czmq 3 calls
czmq 4 dropped.

mdbroker.c binds tcp://*:5555, a fixed port it takes no argument for. Rather than patch it, the
whole test runs in a private network namespace (`unshare --net`), where port 5555 is its own and
no parallel test can collide with it. The namespace is anonymous and also a PID namespace whose
first process is this script (`--pid --fork --kill-child`): if ctest kills the test, or the script
dies, the kernel kills the broker and the workers with it, and nothing outlives the test, which a
named `ip netns add` namespace would. It gets its own /proc (`--mount-proc`, hence a mount
namespace too). Creating namespaces needs CAP_SYS_ADMIN; without it the test prints SKIP and
exits 77.

Scenarios, in that order (exit 0 only if both pass):
  long     `zmesh worker --plain --exec 'sleep 10; cat'` serves a 10 s request. The zguide broker
           sends no HEARTBEAT to a busy worker, so a worker that counted that silence (7.5 s)
           would reconnect and drop the reply; the python client (mdp_peers.py) must get it.
  credit   `zmesh worker --echo --credit 8` (ZMWC02, the default): the zguide broker drops the
           unknown protocol frame, so the worker must fall back to MDP/0.1 with exactly one
           warning naming the broker, then serve requests.
"""
import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

SKIP = 77
BROKER_PORT = 5555            # fixed in mdbroker.c
ENDPOINT = "tcp://127.0.0.1:%d" % BROKER_PORT
TEST_TIMEOUT = 50             # seconds; below ctest's TIMEOUT so that our cleanup still runs
STARTUP_TIMEOUT = 20.0        # broker listening (slow under sanitizers and load)
REGISTER_TIMEOUT = 10.0       # a worker known to the broker (the credit one needs a heartbeat
                              # of 2.5 s to give up on ZMWC02, then registers again)
LONG_WORK = 10                # seconds the long request takes
CREDIT_REQUESTS = 20


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def zguide_sources(arg_dir):
    """The directory holding mdbroker.c and mdp.h, or None if no zguide checkout was named."""
    given = os.environ.get("ZMESH_ZGUIDE_DIR") or arg_dir
    if not given:
        return None
    for candidate in (os.path.join(given, "examples", "C"), given):
        if os.path.isfile(os.path.join(candidate, "mdbroker.c")):
            if not os.path.isfile(os.path.join(candidate, "mdp.h")):
                raise Failure("%s has mdbroker.c but no mdp.h" % candidate)
            return candidate
    raise Failure("ZMESH_ZGUIDE_DIR=%s holds neither examples/C/mdbroker.c nor mdbroker.c" % given)


# -- outside the namespace: decide, then become `unshare` -------------------------------------

def enter_namespace(args, sources):
    unshare = shutil.which("unshare")
    if not unshare or not shutil.which("ip"):
        print("SKIP: needs unshare(1) and ip(8) to give mdbroker its fixed port 5555 in a "
              "private network namespace")
        return SKIP
    probe = subprocess.run([unshare, "--net", "--pid", "--fork", "--mount-proc", "true"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if probe.returncode != 0:
        print("SKIP: cannot create a network namespace for mdbroker's fixed port 5555 "
              "(needs CAP_SYS_ADMIN): %s" % probe.stderr.decode(errors="replace").strip())
        return SKIP
    # --mount-proc: a /proc of the new PID namespace, as the processes in it expect (LeakSanitizer
    # in a sanitizer build reads its own /proc/PID/task, and host PIDs would not match).
    argv = [unshare, "--net", "--pid", "--fork", "--kill-child", "--mount-proc", sys.executable,
            os.path.abspath(__file__), "--in-namespace", "--sources", sources,
            "--zmesh", args.zmesh, "--compat-header", args.compat_header]
    sys.stdout.flush()
    # exec, not a child: ctest's process is then unshare itself, whose death kills ours.
    os.execv(unshare, argv)


# -- inside the namespace ---------------------------------------------------------------------

class Process:
    """A child with stdout and stderr in a temp file; stopped at the latest by close()."""

    def __init__(self, name, argv):
        self.name = name
        self.out = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.out,
                                     stderr=subprocess.STDOUT)

    def stop(self, timeout=3.0):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise Failure("%s did not exit within %.1f s of SIGTERM" % (self.name, timeout))

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log(self):
        self.out.seek(0)
        return self.out.read().decode(errors="replace")


def build_broker(sources, compat_header, workdir):
    cc = shutil.which("cc") or shutil.which("gcc")
    check(cc, "no C compiler (cc) to build mdbroker.c")
    binary = os.path.join(workdir, "mdbroker")
    # -w: the zguide's example code is not ours to warn about.
    r = subprocess.run([cc, "-O1", "-w", "-include", compat_header, "-I", sources,
                        os.path.join(sources, "mdbroker.c"), "-o", binary, "-lczmq", "-lzmq"],
                       capture_output=True)
    if r.returncode != 0:
        err = r.stderr.decode(errors="replace")
        hint = " (install libczmq-dev)" if "czmq.h" in err else ""
        raise Failure("building mdbroker.c failed%s:\n%s" % (hint, err[-3000:]))
    return binary


def wait_listening(port, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise Failure("mdbroker not listening on port %d after %.0f s" % (port, timeout))


def wait_registered(ctx, service, timeout):
    """Polls mmi.service (which mdbroker answers itself) until the service has a worker."""
    from mdp_peers import MdpClient
    client = MdpClient(ctx, ENDPOINT, timeout=2.5, retries=1)
    try:
        deadline = time.monotonic() + timeout
        while True:
            answer = client.request("mmi.service", service)
            if answer == [b"200"]:
                return
            check(time.monotonic() < deadline, "%r not registered with mdbroker after %.0f s "
                  "(mmi.service says %r)" % (service, timeout, answer))
            time.sleep(0.05)
    finally:
        client.close()


def scenario_long(env):
    worker = env.start("zmesh worker (long)",
                       [env.zmesh, "worker", "--broker", ENDPOINT, "--service", "zguide.slow",
                        "--plain", "--exec", "sleep %d; cat" % LONG_WORK])
    wait_registered(env.ctx, "zguide.slow", REGISTER_TIMEOUT)
    from mdp_peers import MdpClient
    client = MdpClient(env.ctx, ENDPOINT, timeout=LONG_WORK + 15, retries=1)
    try:
        t0 = time.monotonic()
        reply = client.request("zguide.slow", [b"ten seconds of work"])
        took = time.monotonic() - t0
    finally:
        client.close()
    check(reply == [b"ten seconds of work"], "long request answered %r" % reply)
    check(took >= LONG_WORK, "the reply came after %.1f s, before the work could be done" % took)
    check(worker.proc.poll() is None, "the zmesh worker exited: %s" % worker.log()[-2000:])
    rc = worker.stop()
    check(rc == 0, "zmesh worker exited %d on SIGTERM" % rc)
    return "a %d s request answered after %.1f s" % (LONG_WORK, took)


def scenario_credit(env):
    worker = env.start("zmesh worker (credit 8)",
                       [env.zmesh, "worker", "--broker", ENDPOINT, "--service", "zguide.echo",
                        "--echo", "--credit", "8"])
    t0 = time.monotonic()
    wait_registered(env.ctx, "zguide.echo", REGISTER_TIMEOUT)
    registered_after = time.monotonic() - t0
    from mdp_peers import MdpClient
    client = MdpClient(env.ctx, ENDPOINT, timeout=5.0, retries=1)
    try:
        for i in range(CREDIT_REQUESTS):
            body = [b"request %d" % i, b"second frame"]
            reply = client.request("zguide.echo", body)
            check(reply == body, "request %d echoed as %r" % (i, reply))
    finally:
        client.close()
    rc = worker.stop()
    check(rc == 0, "zmesh worker exited %d on SIGTERM" % rc)
    log = worker.log()
    warnings = [line for line in log.splitlines() if "does not speak ZMWC02" in line]
    check(len(warnings) == 1, "expected one fallback warning, got %d:\n%s" % (len(warnings), log))
    check(ENDPOINT in warnings[0], "the warning does not name the broker: %s" % warnings[0])
    return ("registered after %.1f s (fallback), %d requests echoed; warning: %s"
            % (registered_after, CREDIT_REQUESTS, warnings[0].strip()))


class Env:
    def __init__(self, zmesh):
        import zmq
        self.zmesh = zmesh
        self.ctx = zmq.Context()
        self.processes = []

    def start(self, name, argv):
        p = Process(name, argv)
        self.processes.append(p)
        return p

    def close(self):
        for p in reversed(self.processes):
            p.close()
        self.ctx.term()


def in_namespace(args):
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

    def on_alarm(signum, frame):
        raise Failure("no result within %d s" % TEST_TIMEOUT)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TEST_TIMEOUT)

    workdir = tempfile.mkdtemp(prefix="zmesh-zguide-")
    env = None
    ok = False
    try:
        binary = build_broker(args.sources, args.compat_header, workdir)
        env = Env(args.zmesh)
        stdbuf = shutil.which("stdbuf")  # the broker's -v log, unbuffered, for a failure report
        env.start("mdbroker", ([stdbuf, "-oL"] if stdbuf else []) + [binary, "-v"])
        wait_listening(BROKER_PORT, STARTUP_TIMEOUT)
        for name, scenario in (("long", scenario_long), ("credit", scenario_credit)):
            t0 = time.monotonic()
            detail = scenario(env)
            print("PASS %s (%.1f s): %s" % (name, time.monotonic() - t0, detail), flush=True)
        ok = True
    except Failure as e:
        print("FAIL: %s" % e, flush=True)
    except Exception as e:  # noqa: BLE001 - any error is a failure, with its trace
        print("FAIL: %s: %s" % (type(e).__name__, e), flush=True)
        traceback.print_exc()
    finally:
        signal.alarm(0)
        if env:
            if not ok:
                for p in env.processes:
                    print("---- %s (last 3000 chars) ----\n%s" % (p.name, p.log()[-3000:]))
            env.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--zmesh", required=True, help="path to the zmesh CLI")
    ap.add_argument("--compat-header", required=True, help="zguide_czmq_compat.h")
    ap.add_argument("--zguide-dir", default="",
                    help="zguide checkout or its examples/C (ZMESH_ZGUIDE_DIR overrides it)")
    ap.add_argument("--in-namespace", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--sources", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.in_namespace:
        return in_namespace(args)
    try:
        sources = zguide_sources(args.zguide_dir)
    except Failure as e:
        print("FAIL: %s" % e)
        return 1
    if sources is None:
        print("SKIP: set ZMESH_ZGUIDE_DIR (environment, or the CMake cache variable) to a "
              "checkout of https://github.com/booksbyus/zguide to build its C mdbroker and run "
              "zmesh workers behind it")
        return SKIP
    if not os.access(args.zmesh, os.X_OK):
        print("FAIL: %s is not an executable" % args.zmesh)
        return 1
    return enter_namespace(args, sources)


if __name__ == "__main__":
    sys.exit(main())
