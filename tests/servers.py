"""Real servers on 127.0.0.1 for the remote-reading tests and benchmark: nginx (Debian's package)
serving a folder, with a location that refuses ranges, one that denies and one that lists the
folder; moto's S3 server; and a small HTTP proxy that adds a fixed delay per request or drops connections mid-body.

nginx runs as a non-daemon child with its own config in a temporary folder; its access log (one
line per request: method, URI, status, Range header) is how the tests count requests.
"""
from __future__ import annotations

import http.client
import http.server
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()),
                                      None)

NGINX_CONF = """daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 256; }}
http {{
    log_format ranges '$request_method $uri $status "$http_range"';
    access_log {tmp}/access.log ranges;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    types {{ }}
    default_type application/octet-stream;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location /norange/ {{ alias {root}/; max_ranges 0; }}
        location /private/ {{ return 403; }}
        location /listing/ {{ alias {root}/; autoindex on; }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(port: int, process: subprocess.Popen | None = None, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with status {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on port {port} after {seconds} s")


class Nginx:
    """nginx serving `root` at http://127.0.0.1:PORT/ (and /norange/, /private/)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.tmp = Path(tempfile.mkdtemp(prefix="sinr-nginx-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.conf = self.tmp / "nginx.conf"
        self.conf.write_text(NGINX_CONF.format(tmp=self.tmp, port=self.port, root=self.root))
        self.log = self.tmp / "access.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> "Nginx":
        self.process = subprocess.Popen([NGINX, "-p", str(self.tmp), "-c", str(self.conf), "-e",
                                         str(self.tmp / "error.log")], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        try:
            _wait_for(self.port, self.process)
        except RuntimeError:
            raise RuntimeError(f"nginx did not start: {(self.tmp / 'error.log').read_text(errors='replace')}")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def requests(self, at_least: int = 0, seconds: float = 5.0) -> list[str]:
        """The access log's lines, once it holds `at_least` of them (or `seconds` have passed): nginx
        writes a line after its response has gone, so a client can finish before its last request shows."""
        deadline = time.monotonic() + seconds
        while True:
            lines = self.log.read_text().splitlines() if self.log.exists() else []
            if len(lines) >= at_least or time.monotonic() > deadline:
                return lines
            time.sleep(0.01)

    def settled_count(self, quiet: float = 0.1) -> int:
        """How many requests the log holds once it has not grown for `quiet` seconds, so that lines of
        requests a test before sent are not counted as the next test's."""
        count = len(self.requests())
        while True:
            time.sleep(quiet)
            now = len(self.requests())
            if now == count:
                return count
            count = now

    def __enter__(self) -> "Nginx":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


class _Server(http.server.ThreadingHTTPServer):
    """A threading HTTP server with nginx's listen backlog (511), not socketserver's 5: a client
    opening dozens of connections at once would otherwise wait a second for its SYNs to be retried."""

    request_queue_size = 511


class DelayProxy:
    """An HTTP/1.1 proxy to `upstream` (host:port) that sleeps `delay` seconds before forwarding
    each request (a network's round-trip time), counts requests and bytes and the most requests
    it had in hand at once (most_active), and can cut the next `drop` responses off halfway
    through their body, stall the next `stall` halfway, sending nothing more for a minute, answer
    the next `fail` requests with 500 Internal Server Error without forwarding them, or (no_suffix)
    refuse every suffix range ('bytes=-N') with 416, as some servers do."""

    def __init__(self, upstream_port: int, delay: float = 0.0) -> None:
        self.delay, self.drop, self.stall, self.fail, self.requests, self.bytes = delay, 0, 0, 0, 0, 0
        self.no_suffix = False
        self.active = self.most_active = 0
        proxy = self
        lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # as nginx (tcp_nodelay): a body is not held back 40 ms
            # waiting for the client's delayed ACK of the headers

            def log_message(self, *args) -> None:
                pass

            def _forward(self, method: str) -> None:
                with lock:
                    proxy.active += 1
                    proxy.most_active = max(proxy.most_active, proxy.active)
                self.handed_over = False
                try:
                    self._relay(method)
                finally:
                    with lock:
                        proxy.active -= not self.handed_over

            def _relay(self, method: str) -> None:
                time.sleep(proxy.delay)
                with lock:
                    proxy.requests += 1
                    drop = proxy.drop > 0
                    proxy.drop -= drop
                    stall = not drop and proxy.stall > 0
                    proxy.stall -= stall
                    fail = proxy.fail > 0
                    proxy.fail -= fail
                if proxy.no_suffix and (self.headers.get("Range") or "").startswith("bytes=-"):
                    self.send_response(416)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if fail:
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "host")}
                upstream.request(method, self.path, headers=headers)
                response = upstream.getresponse()
                body = response.read()
                upstream.close()
                self.send_response(response.status, response.reason)
                for key, value in response.getheaders():
                    if key.lower() not in ("connection", "transfer-encoding", "keep-alive"):
                        self.send_header(key, value)
                self.end_headers()
                if method == "HEAD":
                    return
                if drop or stall:  # half the body, then the connection is gone, or silent
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    if stall:
                        time.sleep(60)
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                with lock:  # counted first: the client may be done (and ask again) before this thread runs again
                    proxy.bytes += len(body)
                    proxy.active -= 1
                    self.handed_over = True
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._forward("GET")

            def do_HEAD(self) -> None:
                self._forward("HEAD")

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "DelayProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class MotoS3:
    """moto's S3 server in this process, on a free port: `options` are the s3fs storage_options
    that reach it, `client` a boto3 client of it."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)

    def __enter__(self) -> "MotoS3":
        import boto3

        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self.options = {"endpoint_url": self.endpoint, "key": "testing", "secret": "testing",
                        "client_kwargs": {"region_name": "us-east-1"}}
        self.client = boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="testing",
                                   aws_secret_access_key="testing", region_name="us-east-1")
        self._post("/moto-api/reset", b"")  # moto's backends are process-wide: start from none
        return self

    def _post(self, path: str, body: bytes) -> None:
        import urllib.request

        request = urllib.request.Request(f"{self.endpoint}{path}", data=body, headers={"Content-Type": "text/plain"},
                                         method="POST")  # text/plain: not a form
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def enforce_auth(self, on: bool) -> None:
        """From now on, check every request's signature and IAM policies (on), or let all pass as
        moto does by default (off). moto's switch is process-wide: switch it off before stopping."""
        self._post("/moto-api/reset-auth", b"0" if on else b"inf")

    def iam(self, options: dict | None = None):
        """A boto3 IAM client of this server that signs with `options`' key (default: self.options)."""
        import boto3

        options = options or self.options
        return boto3.client("iam", endpoint_url=self.endpoint, aws_access_key_id=options["key"],
                            aws_secret_access_key=options["secret"], region_name="us-east-1")

    def user(self, name: str, policy: dict) -> dict:
        """An IAM user with the inline policy `policy` (named NAME-policy), and the s3fs
        storage_options that sign as them. Create users while auth is off."""
        import json

        iam = self.iam()
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName=f"{name}-policy", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return {**self.options, "key": key["AccessKeyId"], "secret": key["SecretAccessKey"]}

    def __exit__(self, *exc) -> None:
        try:
            self.enforce_auth(False)
        finally:
            self.server.stop()
