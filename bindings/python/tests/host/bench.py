"""The native-4 exchange of bench/bench_exchange.c through policyexec.host:
fill the request, run the four phases, read the result.

    python3 bench.py PLUGIN.so [ITERATIONS [REPEATS]]

Prints the minimum and the median over REPEATS runs, in ns per exchange. With --profile,
prints where the time goes instead (cProfile)."""

import sys
import time

from policyexec import host

NATIVE4 = [{"name": "sample-native-response-header", "version": "1.0.0"},
           {"name": "sample-native-request-body", "version": "1.0.0"},
           {"name": "sample-native-response-header", "version": "1.0.0"},
           {"name": "sample-native-response-body", "version": "1.0.0"}]


def one(chain, ex, payload):
    ex.reset()
    ex.method = "POST"
    ex.path = "/echo"
    ex.authority = "backend.local:9000"
    req = ex.request_headers
    req.add("user-agent", "bench")
    req.add("content-type", "text/plain")
    req.add("accept", "*/*")
    ex.request_body = payload
    chain.run(ex, host.REQUEST_HEADERS)
    if chain.run(ex, host.REQUEST_BODY) != host.CONTINUE:
        return False
    ex.status = 200
    ex.response_headers.add("content-type", "text/plain")
    ex.response_body = ex.request_body
    chain.run_phases(ex, host.RESPONSE_HEADERS, host.RESPONSE_BODY)
    status = ex.status
    phase = ex.response_headers.get("x-sample-policy-phase")
    body = ex.response_body
    return status == 200 and phase is not None and len(body) > len(payload)


def raw_loop(chain, ex, payload):
    """The same C calls as one(), made straight through ctypes with no
    binding logic: the floor ctypes itself sets (for the "what dominates"
    line of the benchmark). Returns a function running n exchanges."""
    import ctypes
    lib, h, ch = ex._lib, ex._h, chain._h
    n_ = ctypes.c_size_t()
    n_ref = ctypes.byref(n_)
    s = host._lib.Slice()
    s_ref = ctypes.byref(s)
    string_at = ctypes.string_at
    reset, set_method, set_path, set_authority = (
        lib.pe_exchange_reset, lib.pe_exchange_set_method_n, lib.pe_exchange_set_path_n,
        lib.pe_exchange_set_authority_n)
    add, body_set, body_n = (lib.pe_exchange_header_add_n, lib.pe_exchange_body_set_n,
                             lib.pe_exchange_body_n)
    run, run_phases, verdict = lib.pe_chain_run, lib.pe_chain_run_phases, lib.pe_exchange_verdict
    set_status, status, get = (lib.pe_exchange_set_status, lib.pe_exchange_status,
                               lib.pe_exchange_header_get_nth_n)
    plen = len(payload)

    def loop(n):
        for _ in range(n):
            reset(h)
            set_method(h, b"POST", 4)
            set_path(h, b"/echo", 5)
            set_authority(h, b"backend.local:9000", 18)
            add(h, 0, b"user-agent", 10, b"bench", 5)
            add(h, 0, b"content-type", 12, b"text/plain", 10)
            add(h, 0, b"accept", 6, b"*/*", 3)
            body_set(h, 0, payload, plen)
            run(ch, h, 0)
            verdict(h)
            run(ch, h, 1)
            verdict(h)
            set_status(h, 200)
            add(h, 1, b"content-type", 12, b"text/plain", 10)
            p = body_n(h, 0, n_ref)
            b = string_at(p, n_.value)
            body_set(h, 1, b, len(b))
            run_phases(ch, h, 2, 3)
            verdict(h)
            status(h)
            get(h, 1, b"x-sample-policy-phase", 21, 0, s_ref)
            string_at(s.ptr, s.len).decode()
            p = body_n(h, 1, n_ref)
            string_at(p, n_.value)
    return loop


def main(argv):
    profile = "--profile" in argv
    argv = [a for a in argv if a != "--profile"]
    plugin = argv[0]
    iterations = int(argv[1]) if len(argv) > 1 else 20000
    repeats = int(argv[2]) if len(argv) > 2 else 5
    payload = b"x" * 50
    with host.Engine() as engine:
        engine.load_plugin(plugin)
        with engine.chain(NATIVE4) as chain, engine.exchange() as ex:
            for _ in range(iterations // 10 + 1):
                assert one(chain, ex, payload)
            if profile:
                import cProfile
                import pstats
                cProfile.runctx("for _ in range(n): one(chain, ex, payload)", globals(),
                                {"n": iterations, "one": one, "chain": chain, "ex": ex,
                                 "payload": payload}, "/tmp/pe_bench.prof")
                pstats.Stats("/tmp/pe_bench.prof").sort_stats("tottime").print_stats(12)
                return 0
            raw = raw_loop(chain, ex, payload)
            raw_runs = []
            for _ in range(repeats):
                t0 = time.perf_counter_ns()
                raw(iterations)
                raw_runs.append((time.perf_counter_ns() - t0) / iterations)
            runs = []
            for _ in range(repeats):
                t0 = time.perf_counter_ns()
                ok = 0
                for _ in range(iterations):
                    ok += one(chain, ex, payload)
                runs.append((time.perf_counter_ns() - t0) / iterations)
                if ok != iterations:
                    print(f"{iterations - ok} exchanges gave a wrong result", file=sys.stderr)
                    return 1
    runs.sort()
    raw_runs.sort()
    print(f"python   same C calls, bare ctypes: min {raw_runs[0]:8.0f} ns, median "
          f"{raw_runs[len(raw_runs) // 2]:8.0f} ns ({repeats} runs of {iterations})")
    print(f"python   native-4 exchange: min {runs[0]:8.0f} ns, median {runs[len(runs) // 2]:8.0f} ns "
          f"({repeats} runs of {iterations})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
