"""What the Python tests' stand-in models share: the SageMaker container
contract's health check, and a free loopback port."""

import socket
from http.server import BaseHTTPRequestHandler


def free_port():
    """A loopback port nothing listens on (at the time of the call)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class ContainerModel(BaseHTTPRequestHandler):
    """`GET /ping` answers 200 (404 for any other GET), no request log;
    subclasses add `do_POST` for `/invocations`."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(200 if self.path == "/ping" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()
