# SPDX-License-Identifier: MPL-2.0
"""test_keys_interop.py - CURVE certificate files shared between `zmesh keygen` and pyzmq's zmq.auth.

Usage: test_keys_interop.py --zmesh PATH/TO/zmesh

Checks, with pyzmq's own reader and writer (zmq.auth, czmq's zcert format):
  - what `zmesh keygen` writes, zmq.auth.load_certificate reads: 40-character Z85 keys that
    decode to 32 bytes, the secret file mode 0600, and a secret that matches its public key;
    the keys then carry a real CURVE handshake between two pyzmq sockets;
  - what zmq.auth.create_certificates writes (secret file chmod 0600), `zmesh keygen --show`
    reads, printing pyzmq's public key and the name (metadata, else the file name);
  - `zmesh keygen --show` refuses a secret file mode 0644, saying it is readable by others.
Exit 0 = pass; on failure one `FAIL: <reason>` line, then the trace.
"""
import argparse
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import traceback

import zmq
import zmq.auth
from zmq.utils import z85

TEST_TIMEOUT = 45       # seconds; below ctest's TIMEOUT so that cleanup still runs
RUN_TIMEOUT = 15        # one zmesh keygen run
RECV_TIMEOUT_MS = 5000  # the CURVE round trip


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def zmesh_run(zmesh, *args):
    return subprocess.run([zmesh, *args], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT)


def check_key(key, what):
    check(isinstance(key, bytes) and len(key) == 40, "%s is not 40 characters: %r" % (what, key))
    try:
        raw = z85.decode(key)
    except Exception as e:  # noqa: BLE001 - any decoding error means it is not Z85
        raise Failure("%s is not Z85: %r (%s)" % (what, key, e))
    check(len(raw) == 32, "%s decodes to %d bytes, not 32" % (what, len(raw)))


def show(zmesh, path):
    """`zmesh keygen --show PATH` -> {"name": ..., "public-key": ...}."""
    r = zmesh_run(zmesh, "keygen", "--show", path)
    check(r.returncode == 0, "keygen --show %s exited %d: %s" % (path, r.returncode, r.stderr))
    fields = {}
    for line in r.stdout.splitlines():
        key, sep, value = line.partition(": ")
        check(sep, "keygen --show printed a line without ': ': %r" % line)
        fields[key] = value
    check(set(fields) == {"name", "public-key"}, "keygen --show printed %r" % r.stdout)
    return fields


def curve_round_trip(server_public, server_secret, client_public, client_secret):
    """A REQ/REP exchange over CURVE on loopback with these keys; fails if the handshake does."""
    ctx = zmq.Context()
    try:
        server = ctx.socket(zmq.REP)
        server.linger = 0
        server.curve_server = True
        server.curve_secretkey = server_secret
        server.curve_publickey = server_public
        port = server.bind_to_random_port("tcp://127.0.0.1")
        client = ctx.socket(zmq.REQ)
        client.linger = 0
        client.curve_serverkey = server_public
        client.curve_publickey = client_public
        client.curve_secretkey = client_secret
        client.connect("tcp://127.0.0.1:%d" % port)
        client.send(b"ping")
        check(server.poll(RECV_TIMEOUT_MS), "no CURVE request reached the server")
        check(server.recv() == b"ping", "the server got another request")
        server.send(b"pong")
        check(client.poll(RECV_TIMEOUT_MS), "no CURVE reply reached the client")
        check(client.recv() == b"pong", "the client got another reply")
    finally:
        ctx.destroy(linger=0)


def zmesh_to_pyzmq(zmesh, d):
    r = zmesh_run(zmesh, "keygen", "alice", "--dir", d)
    check(r.returncode == 0, "keygen alice exited %d: %s" % (r.returncode, r.stderr))
    public_file = os.path.join(d, "alice.key")
    secret_file = os.path.join(d, "alice.key_secret")
    check(r.stdout.splitlines() == [public_file, secret_file],
          "keygen printed %r, not the two paths" % r.stdout)
    mode = stat.S_IMODE(os.stat(secret_file).st_mode)
    check(mode == 0o600, "the secret file is mode %04o, not 0600" % mode)

    public, secret = zmq.auth.load_certificate(public_file)
    check_key(public, "alice.key's public key")
    check(secret is None, "pyzmq found a secret key in alice.key")
    public2, secret2 = zmq.auth.load_certificate(secret_file)
    check(public2 == public, "the two files hold different public keys")
    check_key(secret2, "alice.key_secret's secret key")
    check(zmq.curve_public(secret2) == public,
          "the secret key does not give the public key (zmq.curve_public)")
    return public, secret2


def pyzmq_to_zmesh(zmesh, d):
    public_file, secret_file = zmq.auth.create_certificates(d, "bob")
    os.chmod(secret_file, 0o600)
    public, secret = zmq.auth.load_certificate(secret_file)
    for path in (public_file, secret_file):
        fields = show(zmesh, path)
        check(fields["public-key"] == public.decode(),
              "zmesh read %s as %s, pyzmq as %s" % (path, fields["public-key"], public.decode()))
        check(fields["name"] == "bob", "zmesh named %s %r, not bob" % (path, fields["name"]))

    # Metadata as pyzmq writes it (bare values, in the secret file only).
    _, carol_secret = zmq.auth.create_certificates(d, "carol", metadata={"name": "Carol Q",
                                                                          "email": "c@q"})
    os.chmod(carol_secret, 0o600)
    check(show(zmesh, carol_secret)["name"] == "Carol Q", "the metadata name was not read")

    # pyzmq creates the secret file as the umask allows (0644 here): zmesh must refuse it so.
    os.chmod(secret_file, 0o644)
    r = zmesh_run(zmesh, "keygen", "--show", secret_file)
    check(r.returncode != 0, "keygen --show accepted a secret file mode 0644")
    check("readable by others" in r.stderr, "unexpected refusal: %r" % r.stderr)
    check(secret_file in r.stderr, "the refusal does not name the file: %r" % r.stderr)
    return public, secret


def run(zmesh):
    d = tempfile.mkdtemp(prefix="zmesh-keys-interop-")
    try:
        alice_public, alice_secret = zmesh_to_pyzmq(zmesh, d)
        bob_public, bob_secret = pyzmq_to_zmesh(zmesh, d)
        # zmesh's keys on the server, pyzmq's on the client: both sets are real CURVE keys.
        curve_round_trip(alice_public, alice_secret, bob_public, bob_secret)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--zmesh", required=True, help="path to the zmesh CLI")
    args = ap.parse_args()
    if not os.access(args.zmesh, os.X_OK):
        print("FAIL: %s is not an executable" % args.zmesh)
        return 1
    if not zmq.has("curve"):
        print("FAIL: this libzmq has no CURVE")
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
