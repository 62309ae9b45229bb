"""The native-4 exchange of bench/bench_exchange.c through policyexec.host:
fill the request, run the four phases, read the result.

    python3 bench.py PLUGIN.so [ITERATIONS [REPEATS]]

Prints the median over REPEATS runs, in ns per exchange. With --profile,
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
    print(f"python   native-4 exchange: {runs[len(runs) // 2]:8.0f} ns "
          f"(median of {repeats} runs of {iterations})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
