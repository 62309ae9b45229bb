#!/usr/bin/python3
"""Large bodies through policyexec-gateway beside plain nginx (same run).

Uploads and downloads one body of --size-mib MiB (default 1024) with curl:

  nginx      curl -> nginx reverse proxy (request and response buffering
             off, so it streams as the gateway does; 64 KiB buffers) -> backend
  pass       curl -> gateway, API with no policy (bodies pass through)
  stream     curl -> gateway, API with sample-native-redact (both bodies
             streamed through the native step, framed chunked)

The backend is nginx serving the body from a file (downloads) and a small
Python sink that reads a request body as it comes and answers its length
and SHA-256 (uploads; the same sink for every proxy). Each case runs
--runs times on a fresh gateway; the report gives the median throughput
and the gateway's peak RSS (VmHWM) over the case's runs, and checks every
body by length and hash (random bytes: the redaction finds nothing to
mask, so the streamed body must come out unchanged).

  bench_bodies.py --gateway build/bin/policyexec-gateway \\
                  --plugin build/examples/policies/sample_native_policies.so

With --python DIR the gateway also runs one Python worker with the policies
of DIR, so that --stream-step may be a streamed Python policy
('{"name": "sample-python-redact", "version": "1.0.0"}'); the report then
gives the worker's peak RSS too.
"""

import argparse
import base64
import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

NGINX_CONF = """daemon off;
master_process on;
worker_processes 1;
pid {run}/nginx.pid;
error_log {run}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {run}/client_body;
    proxy_temp_path {run}/proxy;
    fastcgi_temp_path {run}/fastcgi;
    uwsgi_temp_path {run}/uwsgi;
    scgi_temp_path {run}/scgi;
    client_max_body_size 0;
    upstream files {{ server 127.0.0.1:{files_port}; keepalive 8; }}
    upstream sink {{ server 127.0.0.1:{sink_port}; keepalive 8; }}
    server {{
        listen 127.0.0.1:{files_port};
        location /data/ {{ alias {data_dir}/; }}
        location /pass/data/ {{ alias {data_dir}/; }}
        location /stream/data/ {{ alias {data_dir}/; }}
    }}
    server {{
        listen 127.0.0.1:{proxy_port};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_request_buffering off;
        proxy_buffering off;
        # Reads of 64 KiB both ways, as the gateway's (not nginx's 4 KiB
        # default for an unbuffered proxy, which would flatter the gateway).
        proxy_buffer_size 64k;
        proxy_buffers 4 64k;
        proxy_busy_buffers_size 128k;
        client_body_buffer_size 64k;
        location /data/ {{ proxy_pass http://files; }}
        location /sink {{ proxy_pass http://sink; }}
    }}
}}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what, limit_s=30):
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit("%s exited at start" % what)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("%s did not start" % what)


class Sink(threading.Thread):
    """Reads each request body as it comes (Content-Length or chunked),
    hashing it, and answers {"length", "sha256"}; one connection at a time."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.server = socket.create_server(("127.0.0.1", port))

    def run(self):
        while True:
            conn, _ = self.server.accept()
            with conn:
                try:
                    while self.serve(conn):
                        pass
                except (OSError, ValueError):
                    pass

    def serve(self, conn):
        buf = bytearray()
        while b"\r\n\r\n" not in buf:
            piece = conn.recv(65536)
            if not piece:
                return False
            buf += piece
        head, _, rest = bytes(buf).partition(b"\r\n\r\n")
        verify = head.split(b"\r\n", 1)[0].split(b" ")[1].endswith(b"?verify")
        fields = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip()
        digest, length = hashlib.sha256() if verify else None, 0
        big = bytearray(1 << 20)
        view = memoryview(big)

        def fill():
            n = conn.recv_into(view)
            if n == 0:
                raise ValueError("body cut short")
            return view[:n]

        if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
            # Chunk data is hashed where recv_into put it, as the
            # Content-Length path does: only a size line split across two
            # reads is copied. (Copying every read made chunked uploads, the
            # gateway's streamed ones, look slower than the proxy made them.)
            data, pos = memoryview(bytes(rest)), 0

            def more(keep):
                saved = bytes(keep)  # keep points into big: save it first
                fresh = fill()
                return memoryview(saved + bytes(fresh)) if saved else fresh

            def need(count):  # at least count bytes unread in data
                nonlocal data, pos
                while len(data) - pos < count:
                    data, pos = more(data[pos:]), 0

            while True:
                while True:
                    eol = bytes(data[pos:pos + 4096]).find(b"\r\n")
                    if eol >= 0:
                        break
                    if len(data) - pos >= 4096:
                        raise ValueError("chunk size line too long")
                    data, pos = more(data[pos:]), 0
                size = int(bytes(data[pos:pos + eol]).split(b";")[0], 16)
                pos += eol + 2
                if size == 0:
                    need(2)  # the empty trailer's CRLF
                    break
                while size > 0:
                    if pos == len(data):
                        data, pos = fill(), 0
                    take = min(size, len(data) - pos)
                    update(digest, data[pos:pos + take])
                    pos += take
                    size -= take
                    length += take
                need(2)
                pos += 2
        else:
            left = int(fields.get(b"content-length", b"0"))
            take = min(left, len(rest))
            update(digest, rest[:take])
            length, left = take, left - take
            while left > 0:
                chunk = fill()
                chunk = chunk[:left]
                update(digest, chunk)
                length += len(chunk)
                left -= len(chunk)
        body = json.dumps({"length": length,
                           "sha256": sha256_text(digest) if digest else None}).encode()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        return True


def sha256_text(digest):
    """A digest (a hash object or its bytes) as the sink writes it: base64,
    not hex, because the answer goes back through the streamed chain, and a
    redaction step masks any 13 decimal digits in a row, which a hex digest
    holds about one time in ten."""
    raw = digest if isinstance(digest, bytes) else digest.digest()
    return base64.b64encode(raw).decode()


def update(digest, data):
    if digest is not None:
        digest.update(data)


def make_data(path, mib):
    """--size-mib MiB of random bytes, and their SHA-256."""
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(mib):
            block = os.urandom(1 << 20)
            update(digest, block)
            f.write(block)
    return digest.hexdigest()


def curl(args):
    start = time.monotonic()
    out = subprocess.run(["curl", "-sS", "--fail", "-H", "Expect:"] + args,
                         capture_output=True, check=True)
    return time.monotonic() - start, out.stdout


def download_timed(port, prefix, size):
    """curl's own time to fetch the body into /dev/null."""
    elapsed, out = curl(["-o", "/dev/null", "-w", "%{size_download}",
                         "http://127.0.0.1:%d%s/data/body.bin" % (port, prefix)])
    if int(out) != size:
        raise SystemExit("download through %s: %s bytes" % (prefix or "nginx", out))
    return elapsed


def download_hashed(port, prefix, size, want):
    """curl writes to a pipe that is hashed as it comes (never held)."""
    start = time.monotonic()
    proc = subprocess.Popen(["curl", "-sS", "--fail", "-o", "-",
                             "http://127.0.0.1:%d%s/data/body.bin" % (port, prefix)],
                            stdout=subprocess.PIPE)
    digest, length = hashlib.sha256(), 0
    while True:
        piece = proc.stdout.read(1 << 20)
        if not piece:
            break
        update(digest, piece)
        length += len(piece)
    if proc.wait() != 0 or length != size or digest.hexdigest() != want:
        raise SystemExit("download through %s: %d bytes, digest differs" % (prefix or "nginx",
                                                                             length))
    return time.monotonic() - start


def upload(port, prefix, path, size, want):
    """Uploads the body; with @want the sink hashes it (a check, not timed)."""
    query = "?verify" if want else ""
    elapsed, out = curl(["-T", path, "-X", "POST",
                         "http://127.0.0.1:%d%s/sink%s" % (port, prefix, query)])
    answer = json.loads(out)
    if answer != {"length": size, "sha256": want and sha256_text(bytes.fromhex(want))}:
        raise SystemExit("upload through %s: %r" % (prefix or "nginx", answer))
    return elapsed


def peak_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def children_peak_rss_kib(pid):
    """The largest VmHWM among the children of @pid (its Python workers)."""
    peak = 0
    for task in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/children" % (pid, task)) as f:
                kids = [int(k) for k in f.read().split()]
        except OSError:
            continue
        for kid in kids:
            try:
                peak = max(peak, peak_rss_kib(kid))
            except OSError:
                pass
    return peak


def start_gateway(args, tmp, port, files_port, sink_port):
    apis = []
    for name, policies in (("pass", []), ("stream", [json.loads(args.stream_step)])):
        apis.append({"name": name + "-data", "context": "/%s/data" % name,
                     "upstream": "http://127.0.0.1:%d" % files_port, "policies": policies})
        apis.append({"name": name + "-sink", "context": "/%s/sink" % name,
                     "upstream": "http://127.0.0.1:%d" % sink_port, "policies": policies})
    config = {"listen": "127.0.0.1:%d" % port, "admin": "127.0.0.1:%d" % free_port(),
              "threads": 1, "plugins": [args.plugin] + args.extra_plugin, "apis": apis,
              "upstream_timeout_ms": 60000}
    if args.python:
        config["python"] = {"workers": 1, "timeout_ms": 60000, "paths": [args.python]}
    path = os.path.join(tmp, "gateway.json")
    with open(path, "w") as f:
        json.dump(config, f)
    log = open(os.path.join(tmp, "gateway.log"), "a")
    proc = subprocess.Popen([args.gateway, "--config", path], stderr=log)
    log.close()
    try:
        wait_port(port, proc, "the gateway")
    except SystemExit:
        with open(os.path.join(tmp, "gateway.log")) as f:
            sys.stderr.write(f.read())
        raise
    return proc


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--plugin", required=True)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--stream-step",
                        default='{"name": "sample-native-redact", "version": "1.0.0"}',
                        help="the streamed step of the stream case, as JSON (it must keep "
                             "the body unchanged)")
    parser.add_argument("--directions", default="download,upload",
                        help="which directions to run, comma-separated")
    parser.add_argument("--cases", default="nginx,pass,stream",
                        help="which cases to run, comma-separated")
    parser.add_argument("--python", help="a directory of Python policies (starts one worker)")
    parser.add_argument("--extra-plugin", action="append", default=[],
                        help="another plugin to load (for --stream-policy)")
    args = parser.parse_args()
    args.gateway = os.path.abspath(args.gateway)
    args.plugin = os.path.abspath(args.plugin)
    args.extra_plugin = [os.path.abspath(p) for p in args.extra_plugin]
    args.python = os.path.abspath(args.python) if args.python else None
    if not shutil.which("nginx") or not shutil.which("curl"):
        raise SystemExit("needs nginx and curl")

    tmp = tempfile.mkdtemp(prefix="bench-bodies-")
    data_dir = os.path.join(tmp, "data")
    os.makedirs(data_dir)
    os.chmod(tmp, 0o755)
    os.chmod(data_dir, 0o755)
    size = args.size_mib << 20
    body = os.path.join(data_dir, "body.bin")
    want = make_data(body, args.size_mib)
    os.chmod(body, 0o644)
    files_port, sink_port, proxy_port, gw_port = (free_port() for _ in range(4))
    Sink(sink_port).start()
    run = os.path.join(tmp, "nginx")
    os.makedirs(run)
    os.chmod(run, 0o755)
    with open(os.path.join(run, "nginx.conf"), "w") as f:
        f.write(NGINX_CONF.format(run=run, files_port=files_port, sink_port=sink_port,
                                  proxy_port=proxy_port, data_dir=data_dir))
    nginx = subprocess.Popen(["nginx", "-p", run, "-c", os.path.join(run, "nginx.conf"), "-e",
                              os.path.join(run, "error.log")])
    results = {}
    try:
        wait_port(proxy_port, nginx, "nginx")
        for direction in args.directions.split(","):
            for case in args.cases.split(","):
                times, rss, worker_rss = [], 0, 0
                for i in range(args.runs + 1):  # run 0 checks the bytes, the others are timed
                    gw = None
                    if case == "nginx":
                        port, prefix = proxy_port, ""
                    else:
                        gw = start_gateway(args, tmp, gw_port, files_port, sink_port)
                        port, prefix = gw_port, "/" + case
                    try:
                        if i == 0 and direction == "download":
                            download_hashed(port, prefix, size, want)
                        elif i == 0:
                            upload(port, prefix, body, size, want)
                        elif direction == "download":
                            times.append(download_timed(port, prefix, size))
                        else:
                            times.append(upload(port, prefix, body, size, None))
                        if gw:
                            rss = max(rss, peak_rss_kib(gw.pid))
                            worker_rss = max(worker_rss, children_peak_rss_kib(gw.pid))
                    finally:
                        if gw:
                            gw.terminate()
                            gw.wait()
                t = statistics.median(times)
                results[(direction, case)] = (t, rss)
                print("%-8s %-6s median %6.2f s  %7.1f MiB/s  runs %s  gateway peak RSS %s%s" %
                      (direction, case, t, args.size_mib / t,
                       " ".join("%.2f" % x for x in times),
                       "%.1f MiB" % (rss / 1024) if rss else "-",
                       "  worker peak RSS %.1f MiB" % (worker_rss / 1024) if worker_rss else ""),
                      flush=True)
        for direction in args.directions.split(","):
            if (direction, "nginx") not in results:
                continue  # no anchor to compare with
            anchor = results[(direction, "nginx")][0]
            for case in ("pass", "stream"):
                if (direction, case) not in results:
                    continue
                t, rss = results[(direction, case)]
                print("%-8s %-6s throughput %.0f %% of nginx, peak RSS %.1f MiB" %
                      (direction, case, 100 * anchor / t, rss / 1024))
    finally:
        nginx.terminate()
        nginx.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
