"""The fixed exchange script of tests/hosts/exchange_dump.c, through the
Python binding, printed in the same canonical form (keep them identical)."""

import sys

from policyexec import host


def _esc(data):
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    return "".join(chr(c) if 0x21 <= c <= 0x7e and c != 0x5c else f"\\x{c:02x}" for c in data)


def run_script(chain, ex):
    """Returns the name of the first failing code, as the C program prints."""
    try:
        ex.method = "POST"
        ex.path = "/echo?x=1"
        ex.authority = "backend.local:9000"
        ex.request_headers.add("User-Agent", "dump")
        ex.request_headers.add("Accept", "a")
        ex.request_headers.add("accept", "b")
        ex.request_headers.add("x-in", b"v\xe9")
        ex.metadata["tenant"] = "t1"
        ex.request_body = b"hello\0world\xff"
        for phase in (host.REQUEST_HEADERS, host.REQUEST_BODY):
            if ex.verdict == host.CONTINUE:
                chain.run(ex, phase)
        if ex.verdict != host.CONTINUE:
            return "PE_OK"
        ex.status = 200
        ex.response_headers.add("Content-Type", "text/plain")
        ex.response_headers.add("Set-Cookie", "a=1")
        ex.response_headers.add("set-cookie", "b=2")
        ex.response_body = ex.request_body
        chain.run_phases(ex, host.RESPONSE_HEADERS, host.RESPONSE_BODY)
        return "PE_OK"
    except host.PolicyExecError as err:
        return err.name


def dump(ex, rc):
    lines = [f"rc {rc}", f"verdict {ex.verdict}", f"status {ex.status}",
             f"method {_esc(ex.method)}", f"path {_esc(ex.path)}",
             f"authority {_esc(ex.authority)}"]
    for side, headers, body in (("request", ex.request_headers, ex.request_body),
                                ("response", ex.response_headers, ex.response_body)):
        lines += [f"{side}-header {_esc(k)}: {_esc(v)}" for k, v in headers.items()]
        lines.append(f"{side}-body {_esc(body)}")
    lines += [f"meta {_esc(k)}={_esc(v)}" for k, v in ex.metadata.items()]
    return "\n".join(lines) + "\n"


def main(argv):
    plugin, worker, chain_file, *module_dirs = argv
    with host.Engine() as engine:
        engine.load_plugin(plugin)
        if module_dirs:
            engine.start_python(module_dirs, workers=1, worker_path=worker)
        with open(chain_file, "rb") as f:
            chain = engine.chain(f.read())
        with chain, engine.exchange() as ex:
            rc = run_script(chain, ex)
            return dump(ex, rc)


if __name__ == "__main__":
    sys.stdout.write(main(sys.argv[1:]))
