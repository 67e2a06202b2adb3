"""What the Python tests' stand-in models share: the SageMaker container
contract's health check, and a free loopback port."""

import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def free_port():
    """A loopback port nothing listens on (at the time of the call)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def serve(handler):
    """A threaded HTTP server for `handler` on a free loopback port, serving
    in the background (daemon threads: a test's end stops it)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class ContainerModel(BaseHTTPRequestHandler):
    """`GET /ping` answers 200 (404 for any other GET), no request log;
    subclasses add `do_POST` for `/invocations`."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200 if self.path == "/ping" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()


_started = []


def _kill_started_on_failure(kind, value, tb):
    for p in _started:
        p.kill()
    sys.__excepthook__(kind, value, tb)


def start_endpoint(capline_bin, config, work, name="endpoint"):
    """Writes `config` to WORK/NAME.json, starts `capline endpoint` on it
    (stderr to WORK/NAME.log), and returns the process once its `Listen`
    port accepts connections. An uncaught exception kills every endpoint
    started this way, so a failed test leaves no process behind."""
    cfg = os.path.join(work, f"{name}.json")
    with open(cfg, "w") as f:
        json.dump(config, f)
    proc = subprocess.Popen([capline_bin, "endpoint", "--config", cfg], stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(work, f"{name}.log"), "w"))
    _started.append(proc)
    sys.excepthook = _kill_started_on_failure
    host, port = config["Listen"].rsplit(":", 1)
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=0.2).close()
            return proc
        except OSError:
            assert time.time() < deadline and proc.poll() is None, "capline endpoint did not start"
            time.sleep(0.05)
