"""The "pystream" scenario of test_nginx_module.py: bodies streamed through
Python streamed steps (pe_chain_stream_body_async) without blocking the
nginx worker (one worker, worker_processes 1).

  - sample-python-redact streams request and response bodies byte for byte
    (0 B, 1 B, 1 MiB, 64 MiB), with nginx's request buffering and without,
    card numbers straddling nginx's buffers masked;
  - while a chunk sleeps in a slow streamed Python step (request side, then
    response side), another request to the same worker is answered before
    it completes: the worker is not blocked;
  - a streamed Python step raising mid-body: fail closed before any output
    a clean 500, after it a cut connection; fail open completes;
  - clients that go away while a chunk is pending: no crash, no alert, and
    the worker keeps serving (the same pid);
  - a graceful quit (SIGQUIT, as nginx -s quit) with a chunk pending: the
    request completes and nginx exits, leaving no Python worker or socket.

The helpers come from test_nginx_module.py as `h`, the streaming helpers
from ngx_stream_tests.py.
"""

import os
import signal
import socket
import time

import ngx_stream_tests as st

MIB = st.MIB
SLOW_MS = 2500  # per chunk in ngx-test-slow-stream


def locations(h):
    redact = [h.step("sample-python-redact")]
    unbuffered = "proxy_request_buffering off; proxy_buffering off;"
    proxied = lambda path, steps, extra="": h.proxied(path, steps,
                                                      "client_max_body_size 0; " + extra)
    fail = lambda after, mode: [h.step("ngx-test-raise-stream", params={"after": after},
                                       failure_mode=mode)]
    return "".join([
        "    location /none/ { proxy_pass http://echo; }\n",
        proxied("/pyredact/", redact),
        proxied("/pyredact-nb/", redact, unbuffered),
        proxied("/slow/", [h.step("ngx-test-slow-stream", params={"ms": SLOW_MS})]),
        proxied("/slow-nb/", [h.step("ngx-test-slow-stream", params={"ms": SLOW_MS})],
                unbuffered),
        proxied("/pyfail-early/", fail(0, "closed")),
        proxied("/pyfail-late/", fail(MIB, "closed")),
        proxied("/pyfail-open/", fail(MIB, "open")),
    ])


def fast_probe(h, env, what):
    """A request to a location without Python, timed; must be answered."""
    t0 = time.monotonic()
    status, _, data = h.request(env.port, "POST", "/none/x", b"probe", timeout=30)
    h.check(status == 200 and data == b"probe", f"{what}: probe answered {status} {data!r}")
    return time.monotonic() - t0, time.monotonic()


def check_not_blocked(h, env, slow_fn, what):
    """Starts slow_fn (a body through the slow step), probes the worker while
    its chunk sleeps in Python, and checks the probe came back first, well
    within the 1.9 s the chunk still sleeps (a blocked worker would answer
    only after it)."""
    slow = h.Background(slow_fn)
    time.sleep(0.6)  # the chunk reaches the Python step
    took, probe_done = fast_probe(h, env, what)
    slow.join(60)
    h.check(slow.done_at is not None and slow.error is None,
            f"{what}: the slow request failed: {slow.error}")
    h.check(probe_done < slow.done_at and took < SLOW_MS / 1000.0 * 0.4,
            f"{what}: the probe took {took:.2f} s and ended "
            f"{slow.done_at - probe_done:.2f} s before the slow request")
    return slow.result, took


def raw_abandon(env, request, wait=0.6):
    """Sends request on a raw connection, waits until its chunk is pending,
    and goes away."""
    s = socket.create_connection(("127.0.0.1", env.port), timeout=10)
    s.sendall(request)
    time.sleep(wait)
    s.close()


def scenario_pystream(env, h):
    check = h.check
    echo = st.load_echo(env.args.echo)
    extra = "  policyexec_python_timeout 20s;\n"
    env.write_conf(env.main_conf(locations(h), workers=1, extra_http=extra))
    env.start()
    worker = env.nginx_workers()

    for size in (0, 1, MIB):
        payload = st.with_cards(size, size + 3)
        for loc in ("/pyredact/", "/pyredact-nb/"):
            for suffix in ("x", "chunked"):
                status, headers, data = h.request(env.port, "POST", loc + suffix, payload)
                check(status == 200 and data == st.redacted(payload),
                      f"{loc}{suffix} {size} B: {status}, {len(data)} bytes")
                check(headers.get("x-echo-length") == str(size), f"{loc}{suffix}: upstream length")
    payload = st.with_cards(MIB, 4)
    check(st.redacted(payload) != payload, "no cards to mask")
    print("ok: sample-python-redact byte for byte (0 B, 1 B, 1 MiB), both bodies, "
          "buffered and unbuffered, cards across buffers")

    big = 64 * MIB
    want = st.pattern_sha(echo, big)
    for loc in ("/pyredact-nb/", "/pyredact/"):
        t0 = time.monotonic()
        status, _, data = st.upload(env.port, loc + "sink", big, echo)
        check(status == 200 and f'"length": {big}' in data.decode() and want in data.decode(),
              f"{loc} upload 64 MiB: {status} {data[:200]!r}")
        status, headers, n, sha, complete = st.download(env.port, loc + f"gen?bytes={big}")
        check(status == 200 and complete and n == big and sha == want,
              f"{loc} download 64 MiB: {status} {n} complete={complete}")
        print(f"ok: 64 MiB up and down through {loc} ({time.monotonic() - t0:.1f} s)")

    # The proof that the worker is not blocked: one nginx worker, a chunk
    # sleeping SLOW_MS in Python, and a request answered meanwhile.
    for loc in ("/slow/", "/slow-nb/"):
        body = b"slow body 4111111111111111"
        result, took = check_not_blocked(
            h, env, lambda: h.request(env.port, "POST", loc + "x", body, timeout=60),
            f"{loc} request body")
        check(result[0] == 200 and result[2] == body, f"{loc} slow upload: {result}")
        print(f"ok: {loc}: a request answered in {took:.2f} s while a request-body chunk "
              f"waited {SLOW_MS} ms in Python")
    result, took = check_not_blocked(
        h, env, lambda: st.download(env.port, "/slow/gen?bytes=100", timeout=60),
        "/slow/ response body")
    check(result[0] == 200 and result[2] == 100 and result[3] == st.pattern_sha(echo, 100),
          f"/slow/ slow download: {result}")
    print(f"ok: a request answered in {took:.2f} s while a response-body chunk waited in Python")

    status, _, data = h.request(env.port, "POST", "/pyfail-early/sink", b"y" * 65536)
    check(status == 500, f"request stream raising before output: {status} {data[:80]!r}")
    status, _, data = h.request(env.port, "GET", "/pyfail-early/gen?bytes=100000")
    check(status == 500, f"response stream raising before output: {status} {data[:80]!r}")
    status, _, data = h.request(env.port, "POST", "/pyfail-late/sink", b"y" * (2 * MIB))
    check(status == 500, f"request stream raising after output: {status} {data[:80]!r}")
    # The cut comes at once (a connection kept alive would leave the client
    # waiting for the rest until nginx's keepalive_timeout).
    status, _, n, _, complete = st.download(env.port, f"/pyfail-late/gen?bytes={8 * MIB}",
                                            timeout=30)
    check(status == 200 and not complete and n < 8 * MIB,
          f"response stream raising after output: {status} {n} complete={complete}")
    status, _, n, sha, complete = st.download(env.port, f"/pyfail-open/gen?bytes={8 * MIB}")
    check(status == 200 and complete and n == 8 * MIB and sha == st.pattern_sha(echo, 8 * MIB),
          f"fail-open response stream: {status} {n} complete={complete}")
    status, _, data = st.upload(env.port, "/pyfail-open/sink", 2 * MIB, echo)
    check(status == 200 and st.pattern_sha(echo, 2 * MIB) in data.decode(),
          f"fail-open request stream: {status} {data[:200]!r}")
    print("ok: a raising streamed Python step: a clean 500 before output, a cut connection "
          "after it, fail open completes")

    # Clients that go away while a chunk waits in Python: request side
    # (buffered and not), response side (the head is held until the first
    # bytes come out of the step).
    for loc in ("/slow/", "/slow-nb/"):
        raw_abandon(env, f"POST {loc}x HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n"
                         "0123456789".encode())
    raw_abandon(env, b"GET /slow/gen?bytes=5000 HTTP/1.1\r\nHost: t\r\n\r\n")
    fast_probe(h, env, "after abandoned requests")
    time.sleep(3 * SLOW_MS / 1000.0 + 1)  # the abandoned chunks complete in Python
    status, _, data = h.request(env.port, "POST", "/pyredact/x", b"4111111111111111 ok")
    check(status == 200 and data == b"************1111 ok", f"after abandoned: {status} {data!r}")
    check(env.nginx_workers() == worker, f"nginx worker replaced: {worker} -> "
                                         f"{env.nginx_workers()}")
    print("ok: clients gone while a chunk was pending: the same worker serves on")

    # A graceful quit with a chunk pending: the request completes first.
    master = env.master_pid()
    slow = h.Background(lambda: h.request(env.port, "POST", "/slow/x", b"quit body", timeout=60))
    time.sleep(0.6)
    os.kill(master, signal.SIGQUIT)
    slow.join(60)
    check(slow.error is None and slow.result[0] == 200 and slow.result[2] == b"quit body",
          f"request pending at quit: {slow.error or slow.result}")
    h.wait_for(lambda: not h.pid_alive(master) and not any(map(h.pid_alive, worker)),
               "nginx exit after quit", timeout=30)
    h.wait_for(lambda: not env.pyworkers() and not env.socket_files(),
               "no Python worker or socket left", timeout=30)
    log = env.log()
    check("[alert]" not in log and "[emerg]" not in log and "[crit]" not in log,
          "alerts in the error log")
    print("ok: nginx -s quit with a chunk pending: the request completed, nginx exited clean")
