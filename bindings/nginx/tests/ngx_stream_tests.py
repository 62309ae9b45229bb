"""The "stream" scenario of test_nginx_module.py: bodies planned pass-through
and streamed (issue 15) in the stock nginx with the module.

  - sample-native-redact streaming request and response bodies byte for byte
    (0 B, 1 B, 1 MiB, 64 MiB), with nginx's request buffering and without;
    card numbers straddling nginx's buffers masked, in both directions
    (a static file read by the copy filter for the response side);
  - chunked upstream responses;
  - a step that changes the length: Content-Length set from the output
    under request buffering, chunked responses; without request buffering a
    client Content-Length cannot follow the change: a clean 500;
  - a step failing mid-body: before any output a clean answer, after it a
    cut connection (the chunked body never ends);
  - 64 MiB through pass-through and streamed locations without buffering:
    no temp file, and the nginx worker's peak RSS stays far below the body.

The helpers (request, check, step, ...) come from test_nginx_module.py as
`h`, so that this file holds only what is particular to streaming.
"""

import hashlib
import http.client
import importlib.util
import os
import re

MIB = 1 << 20
BIG = 64 * MIB
CARD = re.compile(rb"(?<![0-9])[0-9]{13,19}(?![0-9])")


def redacted(data):
    """What sample-native-redact makes of data (its documented rule)."""
    return CARD.sub(lambda m: b"*" * (len(m.group(0)) - 4) + m.group(0)[-4:], data)


def with_cards(size, seed):
    """size bytes of letters with 16-digit card numbers every few hundred
    bytes, so that many straddle any buffer boundary."""
    import random
    rnd = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        out += bytes(rnd.choice(b"abcdefghij ") for _ in range(rnd.randrange(100, 700)))
        out += str(rnd.randrange(10 ** 15, 10 ** 16)).encode()
    return bytes(out[:size])


def load_echo(path):
    spec = importlib.util.spec_from_file_location("echo_backend", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def pattern_sha(echo, total):
    d = hashlib.sha256()
    for piece in echo.pattern_pieces(total):
        d.update(piece)
    return d.hexdigest()


def upload(port, path, total, echo, chunked=False, timeout=300):
    """POSTs total bytes of the echo's pattern without holding them; returns
    (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {} if chunked else {"Content-Length": str(total)}
        conn.request("POST", path, body=(bytes(p) for p in echo.pattern_pieces(total)),
                     headers=headers, encode_chunked=chunked)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def download(port, path, timeout=300):
    """GETs path; returns (status, headers, length, sha256, complete)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        d, n, complete = hashlib.sha256(), 0, True
        try:
            while True:
                piece = resp.read(1 << 18)
                if not piece:
                    break
                d.update(piece)
                n += len(piece)
        except (http.client.IncompleteRead, ConnectionError):
            complete = False
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, n, d.hexdigest(), complete
    finally:
        conn.close()


def worker_peak_rss_mb(env):
    peak = 0
    for pid in env.nginx_workers():
        with open(f"/proc/{pid}/status") as f:
            m = re.search(r"VmHWM:\s+(\d+) kB", f.read())
        peak = max(peak, int(m.group(1)) // 1024 if m else 0)
    return peak


def locations(h, env):
    redact = [h.step("sample-native-redact")]
    unbuffered = "proxy_request_buffering off; proxy_buffering off;"
    proxied = lambda path, steps, extra="": h.proxied(path, steps,
                                                      "client_max_body_size 0; " + extra)
    fail = lambda after, mode: [h.step("gw-test-stream-fail", "1.0.0", params={"after": after},
                                       failure_mode=mode)]
    return "".join([
        proxied("/redact/", redact),
        proxied("/redact-nb/", redact, unbuffered),
        h.chain_loc("/cards.txt", redact, ""),
        proxied("/pass-nb/", [h.step("sample-native-request-header")], unbuffered),
        proxied("/tag/", [h.step("gw-test-stream-tag", "1.0.0")]),
        proxied("/tag-nb/", [h.step("gw-test-stream-tag", "1.0.0")], unbuffered),
        proxied("/fail-early/", fail(10, "closed")),
        proxied("/fail-late/", fail(MIB, "closed")),
        proxied("/fail-open/", fail(MIB, "open")),
    ])


def scenario_stream(env, h):
    check = h.check
    echo = load_echo(env.args.echo)
    extra = f"  policyexec_plugin {env.args.test_plugin};\n"
    env.write_conf(env.main_conf(locations(h, env), workers=1, extra_http=extra))
    env.start()
    body_temp = os.path.join(env.dir, "tmp", "body")

    # 64 MiB first, so that the worker's peak RSS is theirs: pass-through and
    # streamed without buffering hold no body, in memory or in a file.
    want = pattern_sha(echo, BIG)
    for loc in ("/pass-nb/", "/redact-nb/"):
        status, headers, data = upload(env.port, loc + "sink", BIG, echo)
        check(status == 200 and f'"length": {BIG}' in data.decode() and want in data.decode(),
              f"{loc} upload 64 MiB: {status} {data[:200]!r}")
        status, headers, n, sha, complete = download(env.port, loc + f"gen?bytes={BIG}")
        check(status == 200 and complete and n == BIG and sha == want,
              f"{loc} download 64 MiB: {status} {n} complete={complete}")
    rss = worker_peak_rss_mb(env)
    check(rss < 40, f"nginx worker peak RSS {rss} MB after 64 MiB each way")
    check(not os.path.isdir(body_temp) or not os.listdir(body_temp), "a request body temp file")
    print(f"ok: 64 MiB up and down through pass-through and streamed locations "
          f"(worker peak RSS {rss} MB, no temp file)")

    # Under nginx's request buffering the streamed output is what nginx
    # buffers (a temp file past client_body_buffer_size).
    status, headers, data = upload(env.port, "/redact/sink", BIG, echo, chunked=True)
    check(status == 200 and f'"length": {BIG}' in data.decode() and want in data.decode(),
          f"/redact/ chunked upload 64 MiB: {status} {data[:200]!r}")
    status, headers, n, sha, complete = download(env.port, f"/redact/gen?bytes={BIG}")
    check(status == 200 and complete and n == BIG and sha == want and
          "content-length" not in headers, f"/redact/ download 64 MiB: {status} {headers} {n}")
    print("ok: 64 MiB up (chunked) and down through a streamed location with buffering")

    for size in (0, 1, MIB):
        payload = with_cards(size, size)
        for loc in ("/redact/", "/redact-nb/"):
            for suffix in ("x", "chunked"):
                status, headers, data = h.request(env.port, "POST", loc + suffix, payload)
                check(status == 200 and data == redacted(payload),
                      f"{loc}{suffix} {size} B: {status}, {len(data)} bytes, "
                      f"{sum(a != b for a, b in zip(data, redacted(payload)))} differ")
                check(headers.get("x-echo-length") == str(size), f"{loc}{suffix}: upstream length")
    payload = with_cards(MIB, 1)
    check(redacted(payload) != payload and b"*" * 12 in redacted(payload), "no cards to mask")
    print("ok: redaction byte for byte (0 B, 1 B, 1 MiB), both bodies, cards across buffers, "
          "chunked upstream")

    cards = with_cards(300000, 7)
    with open(os.path.join(env.dir, "html", "cards.txt"), "wb") as f:
        f.write(cards)
    status, headers, data = h.request(env.port, "GET", "/cards.txt")
    check(status == 200 and data == redacted(cards), f"static cards.txt: {status} {len(data)}")
    print("ok: a static file streamed (read by nginx's copy filter), cards across its buffers")

    for size in (0, 5, MIB):
        payload = os.urandom(size)
        status, headers, data = h.request(env.port, "POST", "/tag/x", payload)
        check(status == 200 and data == payload + b"[tag][tag]" and
              headers.get("x-echo-length") == str(size + 5), f"/tag/ {size}: {status} {headers}")
    status, headers, data = h.request(env.port, "POST", "/tag-nb/x", b"abc")
    check(status == 500, f"/tag-nb/ with Content-Length: {status} {data!r}")
    conn = http.client.HTTPConnection("127.0.0.1", env.port, timeout=60)
    conn.request("POST", "/tag-nb/x", body=iter([b"ab", b"c"]), encode_chunked=True)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    check(resp.status == 200 and data == b"abc[tag][tag]", f"/tag-nb/ chunked: {resp.status} {data!r}")
    print("ok: a length-changing step: Content-Length from the output, chunked on; "
          "without request buffering a client Content-Length gets a clean 500")

    status, headers, data = h.request(env.port, "GET", "/fail-early/gen?bytes=100000")
    check(status == 500, f"response stream failing before output: {status} {data[:80]!r}")
    status, headers, data = h.request(env.port, "POST", "/fail-early/sink", b"y" * 65536)
    check(status == 500, f"request stream failing: {status} {data[:80]!r}")
    status, headers, n, sha, complete = download(env.port, f"/fail-late/gen?bytes={8 * MIB}")
    check(status == 200 and not complete and n < 8 * MIB,
          f"response stream failing after output: {status} {n} complete={complete}")
    status, headers, n, sha, complete = download(env.port, f"/fail-open/gen?bytes={8 * MIB}")
    check(status == 200 and complete and n == 8 * MIB and sha == pattern_sha(echo, 8 * MIB),
          f"fail-open stream: {status} {n} complete={complete}")
    print("ok: failure mid-body: a clean 500 before output, a cut connection after it, "
          "fail-open completes")
    log = env.log()
    check("[alert]" not in log and "[emerg]" not in log, "alerts in the error log")
