# SPDX-License-Identifier: MPL-2.0
"""mdp_peers.py - a stand-alone MDP/0.1 client and worker in python3-zmq, for interop tests.

Written from the text of 7/MDP (https://rfc.zeromq.org/spec/7/) and 8/MMI only; it shares no
code with zmesh, so a broker that talks to these peers talks to any conforming MDP/0.1 peer.

    MdpClient  REQ socket (or DEALER with an explicit empty frame), one request at a time; on a
               timeout it drops the socket, opens a fresh one and resends, up to `retries` times.
    MdpWorker  DEALER socket: READY, then REQUEST -> REPLY; sends HEARTBEAT when it has sent
               nothing else for one interval, takes the broker for dead after `liveness`
               silent intervals, and on DISCONNECT closes the socket and registers again on a
               new one (or stops, if asked to).

Run as a script it is a tiny CLI for trying a broker by hand:
    mdp_peers.py worker  --broker EP --service NAME [--heartbeat-ms N] [--liveness N]  (echo)
    mdp_peers.py request --broker EP --service NAME [FRAME ...]
"""
import argparse
import sys
import threading
import time

import zmq

CLIENT_HEADER = b"MDPC01"
WORKER_HEADER = b"MDPW01"

READY = b"\x01"
REQUEST = b"\x02"
REPLY = b"\x03"
HEARTBEAT = b"\x04"
DISCONNECT = b"\x05"

COMMAND_NAMES = {READY: "READY", REQUEST: "REQUEST", REPLY: "REPLY",
                 HEARTBEAT: "HEARTBEAT", DISCONNECT: "DISCONNECT"}


class MdpTimeout(Exception):
    """No reply after every attempt."""


class MdpProtocolError(Exception):
    """The broker sent something that is not a valid MDP/0.1 client reply."""


def _as_frames(body):
    if isinstance(body, (bytes, bytearray, memoryview)):
        return [bytes(body)]
    if isinstance(body, str):
        return [body.encode()]
    return [bytes(f) if not isinstance(f, str) else f.encode() for f in body]


class MdpClient:
    """A synchronous MDP/0.1 client (the client half of 7/MDP)."""

    def __init__(self, ctx, endpoint, timeout=2.5, retries=3, use_dealer=False,
                 socket_setup=None):
        self.ctx = ctx
        self.endpoint = endpoint
        self.socket_setup = socket_setup  # called on each new socket before connect (CURVE keys)
        self.timeout = timeout
        self.retries = retries
        self.use_dealer = use_dealer
        self.sock = None
        self.attempts = 0  # requests sent in all, retries included
        self._open()

    def _open(self):
        if self.sock is not None:
            self.sock.close(linger=0)
        self.sock = self.ctx.socket(zmq.DEALER if self.use_dealer else zmq.REQ)
        self.sock.setsockopt(zmq.LINGER, 0)
        if self.socket_setup:
            self.socket_setup(self.sock)
        self.sock.connect(self.endpoint)

    def close(self):
        if self.sock is not None:
            self.sock.close(linger=0)
            self.sock = None

    def request(self, service, body):
        """Send one REQUEST; return the reply body as a list of frames (bytes)."""
        service = service.encode() if isinstance(service, str) else bytes(service)
        frames = [CLIENT_HEADER, service] + _as_frames(body)
        for attempt in range(self.retries):
            if attempt:
                # Lazy Pirate: a REQ socket cannot send twice, and a reply that comes late must
                # not be mistaken for the next one, so every retry starts on a new socket.
                self._open()
            self.attempts += 1
            if self.use_dealer:
                self.sock.send_multipart([b""] + frames)  # DEALER: we add REQ's empty frame
            else:
                self.sock.send_multipart(frames)
            if self.sock.poll(int(self.timeout * 1000), zmq.POLLIN):
                reply = self.sock.recv_multipart()
                if self.use_dealer:
                    if not reply or reply[0] != b"":
                        raise MdpProtocolError("reply without the empty delimiter: %r" % reply[:3])
                    reply = reply[1:]
                if len(reply) < 2:
                    raise MdpProtocolError("reply too short: %r" % reply)
                if reply[0] != CLIENT_HEADER:
                    raise MdpProtocolError("reply header %r, expected %r" % (reply[0], CLIENT_HEADER))
                if reply[1] != service:
                    raise MdpProtocolError("reply for service %r, expected %r" % (reply[1], service))
                return reply[2:]
        raise MdpTimeout("no reply from %s for '%s' after %d attempt(s) of %.1f s"
                         % (self.endpoint, service.decode(errors="replace"), self.retries,
                            self.timeout))


def echo(body):
    return body


class MdpWorker:
    """An MDP/0.1 worker for one service (the worker half of 7/MDP).

    handler(body_frames) -> reply frames. run() loops until stop() or, with
    reconnect_on_disconnect=False, until the broker sends DISCONNECT. The stats attributes say
    what the worker saw, so a test can check the conversation afterwards.
    """

    def __init__(self, ctx, endpoint, service, handler=echo, heartbeat=2.5, liveness=3,
                 reconnect_delay=0.25, send_heartbeats=True, reconnect_on_disconnect=True,
                 disconnect_on_stop=True, socket_setup=None):
        self.ctx = ctx
        self.socket_setup = socket_setup  # called on each new socket before connect (CURVE keys)
        self.endpoint = endpoint
        self.service = service.encode() if isinstance(service, str) else bytes(service)
        self.handler = handler
        self.heartbeat = heartbeat
        self.liveness = liveness
        self.reconnect_delay = reconnect_delay
        self.send_heartbeats = send_heartbeats  # False only to play a dead worker in tests
        self.reconnect_on_disconnect = reconnect_on_disconnect
        self.disconnect_on_stop = disconnect_on_stop  # say DISCONNECT when stop() ends run()
        self.sock = None
        self._stop = threading.Event()
        self.registered = threading.Event()   # set once READY has gone out on a socket
        self.disconnected = threading.Event() # set on the first DISCONNECT from the broker
        self.lock = threading.Lock()
        self.ready_sent = 0
        self.requests = 0
        self.replies = 0
        self.heartbeats_sent = 0
        self.heartbeats_received = 0
        self.disconnects = 0
        self.reconnects = 0       # new sockets after broker silence or DISCONNECT
        self.broker_silences = 0  # times the broker was taken for dead
        self.malformed = 0
        self.errors = []          # protocol violations seen, as text

    # -- socket life -------------------------------------------------------------------------

    def _send(self, command, *frames):
        self.sock.send_multipart([b"", WORKER_HEADER, command] + list(frames))
        self._last_sent = time.monotonic()

    def _connect(self):
        if self.sock is not None:
            self.sock.close(linger=0)
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if self.socket_setup:
            self.socket_setup(self.sock)
        self.sock.connect(self.endpoint)
        # Exactly one READY per connection: it names our single service.
        self._send(READY, self.service)
        with self.lock:
            self.ready_sent += 1
        self._last_heard = time.monotonic()
        self.registered.set()

    def stop(self):
        self._stop.set()

    # -- main loop ---------------------------------------------------------------------------

    def run(self):
        linger = 0
        try:
            self._connect()
            while not self._stop.is_set():
                now = time.monotonic()
                next_beat = self._last_sent + self.heartbeat
                wait = max(0.0, min(next_beat - now, 0.05))  # wake often enough to see stop()
                if self.sock.poll(int(wait * 1000), zmq.POLLIN):
                    msg = self.sock.recv_multipart()
                    self._last_heard = time.monotonic()
                    if not self._on_message(msg):
                        return
                now = time.monotonic()
                if now - self._last_heard > self.heartbeat * self.liveness:
                    # The broker has been silent for `liveness` intervals: start over.
                    with self.lock:
                        self.broker_silences += 1
                        self.reconnects += 1
                    if self._stop.wait(self.reconnect_delay):
                        return
                    self._connect()
                    continue
                if self.send_heartbeats and now - self._last_sent >= self.heartbeat:
                    # Only when nothing else went out for a whole interval (7/MDP).
                    self._send(HEARTBEAT)
                    with self.lock:
                        self.heartbeats_sent += 1
            if self.disconnect_on_stop:
                # A worker may leave on its own: DISCONNECT tells the broker to forget it now
                # rather than after `liveness` missed heartbeats.
                self._send(DISCONNECT)
                linger = 500  # let the DISCONNECT reach the broker; only ctx.term() waits
        finally:
            if self.sock is not None:
                self.sock.close(linger=linger)
                self.sock = None

    def _on_message(self, msg):
        """Handle one broker command; False ends run()."""
        if len(msg) < 3 or msg[0] != b"" or msg[1] != WORKER_HEADER:
            self._malformed("not an MDP/0.1 worker message: %r" % msg[:3])
            return True
        command = msg[2]
        if command == REQUEST:
            # [client address][empty][body...]: exactly one address, then the delimiter.
            if len(msg) < 5 or msg[4] != b"":
                self._malformed("REQUEST without address envelope: %r" % msg[:6])
                return True
            client, body = msg[3], msg[5:]
            with self.lock:
                self.requests += 1
            reply = _as_frames(self.handler(body))
            self._send(REPLY, client, b"", *reply)
            with self.lock:
                self.replies += 1
            return True
        if command == HEARTBEAT:
            if len(msg) != 3:
                self._malformed("HEARTBEAT with extra frames")
            with self.lock:
                self.heartbeats_received += 1
            return True
        if command == DISCONNECT:
            with self.lock:
                self.disconnects += 1
            self.disconnected.set()
            if not self.reconnect_on_disconnect:
                return False
            # 7/MDP: the broker has forgotten us; register again on a brand-new socket.
            with self.lock:
                self.reconnects += 1
            if self._stop.wait(self.reconnect_delay):
                return False
            self._connect()
            return True
        self._malformed("unexpected command %r from broker" % COMMAND_NAMES.get(command, command))
        return True

    def _malformed(self, what):
        with self.lock:
            self.malformed += 1
            self.errors.append(what)

    def snapshot(self):
        with self.lock:
            return {k: getattr(self, k) for k in (
                "ready_sent", "requests", "replies", "heartbeats_sent", "heartbeats_received",
                "disconnects", "reconnects", "broker_silences", "malformed")}


def start_worker_thread(worker):
    t = threading.Thread(target=worker.run, name="mdp-worker-%s" % worker.service.decode(),
                         daemon=True)
    t.start()
    return t


def _main(argv):
    p = argparse.ArgumentParser(description="independent MDP/0.1 peers")
    sub = p.add_subparsers(dest="role", required=True)
    w = sub.add_parser("worker", help="serve NAME by echoing every request")
    w.add_argument("--broker", required=True)
    w.add_argument("--service", required=True)
    w.add_argument("--heartbeat-ms", type=int, default=2500)
    w.add_argument("--liveness", type=int, default=3)
    r = sub.add_parser("request", help="send one request, print the reply frames")
    r.add_argument("--broker", required=True)
    r.add_argument("--service", required=True)
    r.add_argument("--timeout-ms", type=int, default=2500)
    r.add_argument("--retries", type=int, default=3)
    r.add_argument("frames", nargs="*")
    args = p.parse_args(argv)
    ctx = zmq.Context()
    try:
        if args.role == "worker":
            worker = MdpWorker(ctx, args.broker, args.service, heartbeat=args.heartbeat_ms / 1000,
                               liveness=args.liveness)
            try:
                worker.run()
            except KeyboardInterrupt:
                pass
            return 0
        client = MdpClient(ctx, args.broker, timeout=args.timeout_ms / 1000, retries=args.retries)
        try:
            reply = client.request(args.service, args.frames or [b""])
        except MdpTimeout as e:
            print("mdp_peers: %s" % e, file=sys.stderr)
            return 1
        finally:
            client.close()
        for f in reply:
            sys.stdout.buffer.write(f + b"\n")
        return 0
    finally:
        ctx.term()


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
