#!/usr/bin/env bash
# End-to-end check of a running nchan peer (run.sh): a websocket subscriber on /sub/CHANNEL
# receives a message published by HTTP POST /pub/CHANNEL, and one published as a websocket text
# frame on /pub/CHANNEL, each as one text frame holding exactly the body. Also reports what a
# websocket publisher gets back, and how a binary frame is delivered. Needs only curl and
# python3 (a minimal standard-library websocket client below). Exit status 0 when all passed.
#   check.sh PORT [CHANNEL]       (CHANNEL: default room1)
set -euo pipefail
port=${1:?usage: check.sh PORT [CHANNEL]}
channel=${2:-room1}
curl -sf "http://127.0.0.1:$port/healthz" >/dev/null || { echo "no peer on port $port" >&2; exit 1; }

exec python3 - "$port" "$channel" <<'PY'
import base64, os, socket, struct, subprocess, sys, time

port, channel = int(sys.argv[1]), sys.argv[2]
TEXT, BINARY, CLOSE, PING, PONG = 1, 2, 8, 9, 10

class Ws:
    """Just enough RFC 6455 for this check: handshake, masked sends, unmasked receives."""
    def __init__(self, path):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                        "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.s.recv(4096)
            if not chunk:
                raise RuntimeError(f"{path}: connection closed during the handshake")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status = head.split(b"\r\n", 1)[0].decode()
        if " 101 " not in status + " ":
            raise RuntimeError(f"{path}: handshake answered {status!r}")

    def send(self, payload, opcode=TEXT):
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        self.s.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self, timeout):
        """Next data message as (opcode, payload); None if nothing came within timeout."""
        self.s.settimeout(timeout)
        try:
            opcode, data = None, b""
            while True:
                b0, b1 = self._read(2)
                n = b1 & 0x7F
                if n == 126:
                    n = struct.unpack("!H", self._read(2))[0]
                elif n == 127:
                    n = struct.unpack("!Q", self._read(8))[0]
                mask = self._read(4) if b1 & 0x80 else None
                payload = self._read(n)
                if mask:
                    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                op = b0 & 0x0F
                if op == PING:
                    self.send(payload, PONG)
                    continue
                if op == PONG:
                    continue
                if op == CLOSE:
                    return (CLOSE, payload)
                if op != 0:
                    opcode = op
                data += payload
                if b0 & 0x80:
                    return (opcode, data)
        except socket.timeout:
            return None

failures = 0
def check(ok, what):
    global failures
    print(("ok:   " if ok else "FAIL: ") + what)
    failures += 0 if ok else 1

def expect(sub, body, how):
    got = sub.recv(3)
    check(got == (TEXT, body), f"{how}: subscriber got {got!r}, wanted a text frame {body!r}")

sub = Ws(f"/sub/{channel}")
# The upgrade answer can come before the subscription is registered with the channel's owner
# worker; with 'newest', a message published in between would not reach this subscriber.
time.sleep(0.3)
check(sub.recv(0.3) is None, "a new subscriber gets no backlog (nchan_subscriber_first_message newest)")

# 1. HTTP publisher.
body = f"hello {time.time_ns()}".encode()
status = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
                         "--data-binary", body, f"http://127.0.0.1:{port}/pub/{channel}"],
                        capture_output=True, text=True, check=True).stdout
check(status in ("201", "202"), f"HTTP POST /pub/{channel} answered {status} (201: subscribers, 202: none)")
expect(sub, body, "HTTP publish")

# 2. Websocket publisher.
pub = Ws(f"/pub/{channel}")
body = f"t={time.time_ns() // 1000}; over a websocket".encode()
pub.send(body)
expect(sub, body, "websocket publish")
echo = pub.recv(1)
print(f"info: the websocket publisher got back: {echo!r}")

# 3. A binary frame from a websocket publisher (informational).
pub.send(b"\x00\x01bin", BINARY)
print(f"info: binary publish reaches the subscriber as {sub.recv(3)!r}")

pub.send(b"", CLOSE)
sub.send(b"", CLOSE)
if failures:
    print(f"{failures} check(s) failed")
    sys.exit(1)
print("all checks passed")
PY
