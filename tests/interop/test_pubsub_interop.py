# SPDX-License-Identifier: MPL-2.0
"""test_pubsub_interop.py - plain python3-zmq PUB/SUB sockets through `zmesh broker`'s forwarder.

Usage: test_pubsub_interop.py --zmesh PATH/TO/zmesh

Starts `zmesh broker --xsub tcp://127.0.0.1:* --xpub tcp://127.0.0.1:*`, reads the three endpoints
it prints (MDP, XSUB, XPUB), and checks, with sockets that know nothing of zmesh:
  - a plain SUB gets an answer to a readiness probe (docs/pubsub.md);
  - what a plain PUB publishes reaches each plain SUB exactly for its prefixes, frames intact;
  - the zmesh.directory service answers a plain MDP/0.1 client.
The broker is always stopped, also on failure. Exit 0 = pass; on failure one `FAIL: <reason>` line,
then the broker's log.
"""
import argparse
import os
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback

import zmq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mdp_peers import MdpClient  # noqa: E402

TEST_TIMEOUT = 45       # seconds; below ctest's TIMEOUT so that cleanup still runs
STARTUP_TIMEOUT = 20.0  # the broker printing its endpoints (slow under sanitizers and load)
RECV_TIMEOUT_MS = 3000  # one expected message
WARMUP_TIMEOUT = 10.0   # subscriptions reaching the publisher
CONTROL_PREFIX = b"\x00zmesh."


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def header(seq):
    """A minimal zmesh header, msgpack by hand: {"id": bin16, "sq": uint}."""
    msg_id = os.urandom(16)
    return b"\x82" + b"\xa2id" + b"\xc4\x10" + msg_id + b"\xa2sq" + b"\xcf" + struct.pack(">Q", seq)


def start_broker(zmesh):
    err = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [zmesh, "broker", "--mdp", "tcp://127.0.0.1:*", "--xsub", "tcp://127.0.0.1:*",
         "--xpub", "tcp://127.0.0.1:*", "--log-level", "info"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
    fd = proc.stdout.fileno()
    buf = b""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while buf.count(b"\n") < 3:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Failure("broker printed %d of 3 endpoints within %.0f s"
                          % (buf.count(b"\n"), STARTUP_TIMEOUT))
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                raise Failure("broker exited at start (rc=%s)" % proc.wait())
            buf += chunk
    endpoints = [line.decode().strip() for line in buf.split(b"\n")[:3]]
    for ep in endpoints:
        check(ep.startswith("tcp://127.0.0.1:") and not ep.endswith(":*"),
              "broker printed %r, not a bound endpoint" % ep)
    check(len(set(endpoints)) == 3, "broker printed the same endpoint twice: %r" % endpoints)
    return proc, err, endpoints


def stop_broker(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise Failure("broker did not exit within 3 s of SIGTERM")
    return proc.returncode


def recv_data(sock, timeout_ms=RECV_TIMEOUT_MS):
    """The next message that is not zmesh control traffic, or None on timeout."""
    while sock.poll(timeout_ms, zmq.POLLIN):
        frames = sock.recv_multipart()
        if not frames[0].startswith(CONTROL_PREFIX):
            return frames
    return None


def probe(sub):
    """The readiness handshake: subscribe a unique probe topic, wait for the forwarder's answer."""
    topic = b"\x00zmesh.probe." + os.urandom(16).hex().encode()
    sub.setsockopt(zmq.SUBSCRIBE, topic)
    deadline = time.monotonic() + RECV_TIMEOUT_MS / 1000
    while time.monotonic() < deadline:
        if not sub.poll(100, zmq.POLLIN):
            continue
        frames = sub.recv_multipart()
        if frames[0] != topic:
            continue
        check(len(frames) == 2, "probe answer has %d frames, expected 2" % len(frames))
        check(b"\xa2ty\xabzmesh.probe" in frames[1],
              "probe answer header lacks ty=zmesh.probe: %r" % frames[1])
        sub.setsockopt(zmq.UNSUBSCRIBE, topic)
        return
    raise Failure("no answer to the readiness probe")


def run(zmesh):
    proc, err, (mdp, xsub, xpub) = start_broker(zmesh)
    ctx = zmq.Context()
    socks = []
    ok = False
    try:
        def socket(kind, connect_to):
            s = ctx.socket(kind)
            s.setsockopt(zmq.LINGER, 0)
            s.connect(connect_to)
            socks.append(s)
            return s

        pub = socket(zmq.PUB, xsub)
        weather = socket(zmq.SUB, xpub)
        weather.setsockopt(zmq.SUBSCRIBE, b"wx.")
        sports = socket(zmq.SUB, xpub)
        sports.setsockopt(zmq.SUBSCRIBE, b"sp.")
        sports.setsockopt(zmq.SUBSCRIBE, b"wx.a")
        everything = socket(zmq.SUB, xpub)
        everything.setsockopt(zmq.SUBSCRIBE, b"")
        subs = {"weather": weather, "sports": sports, "everything": everything}
        for s in subs.values():
            probe(s)

        # The forwarder has the subscriptions now; a plain PUB learns of them a little later and
        # drops until then (the slow joiner). Publish warm-up messages until each SUB got one.
        warm = set()
        deadline = time.monotonic() + WARMUP_TIMEOUT
        while len(warm) < len(subs):
            check(time.monotonic() < deadline, "warm-up never reached %s"
                  % sorted(set(subs) - warm))
            for t in (b"wx.warm", b"sp.warm"):
                pub.send_multipart([t, header(0), b"warm"])
            for name, s in subs.items():
                if name not in warm and recv_data(s, 20) is not None:
                    warm.add(name)

        topics = [b"wx.a", b"wx.b", b"sp.x", b"zz.q"]
        for seq in range(1, 4):
            for t in topics:
                pub.send_multipart([t, header(seq), b"%s-%d" % (t, seq)])
        pub.send_multipart([b"wx.end", header(0), b"end"])
        pub.send_multipart([b"sp.end", header(0), b"end"])

        def collect(s, ends):
            got = []
            seen_ends = set()
            while seen_ends != ends:
                frames = recv_data(s)
                check(frames is not None, "timed out; got %r, ends %r" % (got, seen_ends))
                check(len(frames) == 3, "message with %d frames, expected 3" % len(frames))
                topic, hdr, payload = frames
                if topic in ends:
                    seen_ends.add(topic)
                elif b"warm" not in topic:
                    check(len(hdr) == 34 and hdr.startswith(b"\x82\xa2id"), "header altered")
                    check(payload == b"%s-%d" % (topic, struct.unpack(">Q", hdr[-8:])[0]),
                          "payload %r does not match topic %r" % (payload, topic))
                    got.append(payload.decode())
            return sorted(got)

        def expect(prefixes):
            return sorted("%s-%d" % (t.decode(), n) for t in topics for n in range(1, 4)
                          if any(t.startswith(p) for p in prefixes))

        got = collect(weather, {b"wx.end"})
        check(got == expect([b"wx."]), "weather got %r" % got)
        got = collect(sports, {b"sp.end"})
        check(got == expect([b"sp.", b"wx.a"]), "sports got %r" % got)
        got = collect(everything, {b"wx.end", b"sp.end"})
        check(got == expect([b""]), "everything got %r" % got)

        # The directory answers any MDP/0.1 client.
        client = MdpClient(ctx, mdp, timeout=3.0, retries=1)
        try:
            reply = client.request("zmesh.directory",
                                   [b"register", b"py", b"tcp://127.0.0.1:9", b"60000"])
            check(reply == [b"200"], "register answered %r" % reply)
            reply = client.request("zmesh.directory", [b"resolve", b"py"])
            check(reply == [b"200", b"tcp://127.0.0.1:9"], "resolve answered %r" % reply)
            reply = client.request("zmesh.directory", [b"register", b"py"])
            check(reply[0] == b"400" and len(reply) == 2, "malformed register answered %r" % reply)
            reply = client.request("zmesh.lvc", [b""])
            check(reply == [b"404"], "zmesh.lvc without --lvc answered %r" % reply)
        finally:
            client.close()

        rc = stop_broker(proc)
        check(rc == 0, "broker exited with %s on SIGTERM" % rc)
        ok = True
    finally:
        for s in socks:
            s.close(linger=0)
        ctx.term()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()
        if not ok:
            err.seek(0)
            log = err.read().decode(errors="replace")
            if log:
                print("---- broker stderr (last 3000 chars) ----\n%s" % log[-3000:])
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--zmesh", required=True, help="path to the zmesh CLI")
    args = ap.parse_args()
    if not os.access(args.zmesh, os.X_OK):
        print("FAIL: %s is not an executable" % args.zmesh)
        return 1

    def on_alarm(signum, frame):
        raise Failure("no result within %d s" % TEST_TIMEOUT)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TEST_TIMEOUT)
    try:
        run(args.zmesh)
    except Exception as e:  # noqa: BLE001 - any error is a failure, reported with its trace
        print("FAIL: %s: %s" % (type(e).__name__, e), flush=True)
        traceback.print_exc()
        return 1
    finally:
        signal.alarm(0)
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
