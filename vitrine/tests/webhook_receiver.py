"""A seller's webhook receiver, as the Standard Webhooks documentation tells one to write it:
every message is verified with the reference library (`standardwebhooks`) and de-duplicated by
its `webhook-id`. It appends one JSON line per request to a log file, which survives restarts
of this process (the test takes it down and brings it back).

    python webhook_receiver.py PORT LOG SECRET

Paths: `/hooks` accepts; `/gone` answers 410 Gone.
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Lock

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

port, log_path, secret = int(sys.argv[1]), sys.argv[2], sys.argv[3]
webhook = Webhook(secret)
lock = Lock()
seen = set()
try:
    with open(log_path) as f:
        for line in f:
            entry = json.loads(line)
            if entry.get("verified") and not entry.get("duplicate"):
                seen.add(entry["id"])
except FileNotFoundError:
    pass


def log(entry):
    with open(log_path, "a") as f:
        f.write(json.dumps(entry) + "\n")


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        if self.path == "/gone":
            self.send_response(410)
            self.end_headers()
            return
        try:
            payload = webhook.verify(body, headers)
        except WebhookVerificationError as e:
            with lock:
                log({"id": headers.get("webhook-id"), "verified": False, "error": str(e)})
            self.send_response(400)
            self.end_headers()
            return
        msg_id = headers["webhook-id"]
        with lock:
            duplicate = msg_id in seen
            seen.add(msg_id)
            log({
                "id": msg_id,
                "type": payload["type"],
                "verified": True,
                "duplicate": duplicate,
                "signatures": len(headers["webhook-signature"].split(" ")),
                "data": payload["data"],
            })
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", port), Receiver).serve_forever()
