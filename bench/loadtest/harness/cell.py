"""One cell of the matrix: fresh processes, the API created, a discarded
warm-up, the measured run with resource sampling, then everything stopped."""
import http.client
import json
import os
import sys
import time

from . import gateway, nginx, payloads, procs, profiles, resources, wrk_run

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLER = os.path.join(HERE, "sample_resources.py")
PATH = gateway.API_CONTEXT  # every profile is called on the same path


def check_once(port, payload, with_policies):
    """One request checked like validate.lua does: (status, None or why not)."""
    conn = http.client.HTTPConnection(procs.HOST, port, timeout=5)
    try:
        conn.request("POST", PATH, body=payload, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    header = resp.getheader("x-sample-policy-phase")
    if resp.status // 100 != 2:
        return resp.status, f"status {resp.status}: {body[:200]!r}"
    if with_policies and header != "response-header":
        return resp.status, f"x-sample-policy-phase is {header!r}"
    if not with_policies and header is not None:
        return resp.status, f"unexpected x-sample-policy-phase {header!r}"
    if body != payloads.expected(payload, with_policies):
        return resp.status, f"body {body[:200]!r}"
    return resp.status, None


def wait_route(port, payload, with_policies, timeout):
    """Poll until the route answers 2xx (the API may take a moment to be
    served). Returns the first 2xx answer's verdict (None = correct): a wrong
    answer is not retried here but left to wrk's validation, so it shows up
    in the accuracy figures."""
    deadline = time.monotonic() + timeout
    why = "no answer"
    while time.monotonic() < deadline:
        try:
            status, why = check_once(port, payload, with_policies)
            if status // 100 == 2:
                return why
        except OSError as e:
            why = str(e)
        time.sleep(0.1)
    raise RuntimeError(f"route not ready within {timeout}s: {why}")


def run(opts, profile, size, concurrency, cell_dir):
    """Run one cell; return its result record (fields: README.md, results.jsonl)."""
    os.makedirs(cell_dir, exist_ok=True)
    spec = profiles.PROFILES[profile]
    with_policies = profiles.expects_policies(profile)
    payload_file = os.path.join(opts.out, f"payload-{size}.json")
    with open(payload_file, "rb") as f:
        payload = f.read()
    started = []  # Proc objects, stopped in reverse order
    record = {"profile": profile, "payload_bytes": size, "payload": payloads.label(size),
              "concurrency": concurrency, "warmup_s": opts.warmup, "duration_s": opts.duration}
    try:
        backend_port = procs.free_port()
        backend = nginx.start_echo_backend(os.path.join(cell_dir, "backend"), backend_port,
                                           opts.backend_workers)
        started.append(backend)
        roots = [f"backend={backend.pid}"]
        admin_port = None
        if spec["kind"] == "direct":
            target = backend_port
        elif spec["kind"] == "nginx":
            target = procs.free_port()
            proxy = nginx.start_reverse_proxy(os.path.join(cell_dir, "proxy"), target,
                                              opts.gateway_threads, backend_port)
            started.append(proxy)
            roots.append(f"gateway={proxy.pid}")
        elif spec["kind"] == "nginx-module":
            target = procs.free_port()
            proxy = nginx.start_module_proxy(os.path.join(cell_dir, "proxy"), target,
                                             opts.gateway_threads, backend_port, opts.build_dir,
                                             opts.source_dir, spec["policies"], opts.py_workers,
                                             opts.py_timeout_ms, not opts.no_sched_batch)
            started.append(proxy)
            roots.append(f"gateway={proxy.pid}")
        else:
            target, admin_port = procs.free_port(), procs.free_port()
            cfg = gateway.config(opts.build_dir, opts.source_dir, target, admin_port,
                                 opts.gateway_threads, opts.py_workers, opts.py_timeout_ms,
                                 not opts.no_sched_batch)
            gw = gateway.start(opts.build_dir, opts.source_dir,
                               os.path.join(cell_dir, "gateway"), cfg)
            started.append(gw)
            roots.append(f"gateway={gw.pid}")
            lookup_port = None
            if spec.get("lookup"):  # what the profile's policy waits on
                lookup_port = procs.free_port()
                started.append(nginx.start_lookup_service(os.path.join(cell_dir, "lookup"),
                                                          lookup_port, opts.backend_workers))
            record["api"] = gateway.create_api(admin_port, backend_port,
                                               profiles.policies(profile, lookup_port))
        record["first_answer"] = wait_route(target, payload, with_policies, timeout=15) or "ok"

        samples_csv = os.path.join(cell_dir, "samples.csv")
        sampler = procs.Proc(
            "sampler", [sys.executable, SAMPLER, "--out", samples_csv, "--interval",
                        str(opts.sample_interval), "--max-seconds",
                        str(opts.warmup + opts.duration + 120)] +
            [a for r in roots for a in ("--root", r)],
            os.path.join(cell_dir, "sampler.log"))
        started.append(sampler)

        url = f"http://{procs.HOST}:{target}{PATH}"
        if opts.warmup > 0:
            warm = wrk_run.run(url, payload_file, with_policies, concurrency, opts.wrk_threads,
                               opts.warmup, os.path.join(cell_dir, "wrk-warmup.log"))
            record["warmup"] = {"requests": warm["requests"], "errors": _errors(warm)}
        res = wrk_run.run(url, payload_file, with_policies, concurrency, opts.wrk_threads,
                          opts.duration, os.path.join(cell_dir, "wrk.log"),
                          max_requests_per_thread=_per_thread(opts, concurrency))
        # One more sampling round after the run ends, then stop the sampler.
        time.sleep(min(opts.sample_interval, 1.0))
        sampler.stop()

        for p in started:
            if p is not sampler and not p.alive():
                raise RuntimeError(f"{p.name} died during the run; see {p.log_path}")
        if admin_port is not None:
            text = gateway.metrics(admin_port)
            if text is not None:
                with open(os.path.join(cell_dir, "gateway-metrics.txt"), "w") as f:
                    f.write(text)

        t0 = res["started_at"]
        t1 = t0 + res["duration_us"] / 1e6 + 0.5
        record.update(_figures(res, concurrency, capped=bool(opts.max_requests)))
        res_sum = resources.summarize(resources.load(samples_csv), t0, t1)
        seconds = res["duration_us"] / 1e6
        res_sum["wrk_cpu_pct"] = round(100.0 * res["wrk_cpu_s"] / seconds, 1) if seconds else None
        res_sum["other_cpu_pct"] = _other_load(res_sum)
        record["resources"] = res_sum
        record["status"] = "ok"
    except Exception as e:  # one broken cell must not stop the matrix
        record["status"] = "error"
        record["error"] = f"{type(e).__name__}: {e}"
    finally:
        for p in reversed(started):
            p.stop()
    with open(os.path.join(cell_dir, "result.json"), "w") as f:
        json.dump(record, f, indent=2)
    return record


def _other_load(r):
    """Machine CPU not used by this cell's processes nor wrk (% of one core):
    other work on the machine that competed with the run (plus the sampler's
    own small share). None when a figure is missing."""
    parts = [r["machine"]["cpu_pct_mean"], r["wrk_cpu_pct"], r["gateway"]["cpu_pct_mean"] or 0.0,
             r["workers"]["cpu_pct_mean"] or 0.0, r["backend"]["cpu_pct_mean"]]
    if parts[0] is None or parts[1] is None or parts[4] is None:
        return None
    return round(max(0.0, parts[0] - sum(parts[1:])), 1)


def _per_thread(opts, concurrency):
    """--max-requests split over wrk's threads (0 = run for the duration)."""
    if not opts.max_requests:
        return 0
    threads = max(1, min(opts.wrk_threads, concurrency))
    return -(-opts.max_requests // threads)


def _errors(res):
    s = res["socket_errors"]
    return {"non2xx": res["non2xx"], "mismatches": res["mismatches"],
            "connect": s["connect"], "read": s["read"], "write": s["write"],
            "timeout": s["timeout"]}


def _figures(res, concurrency, capped):
    """The cell's figures from wrk's LOADTEST_RESULT.

    wrk corrects its latency histogram for coordinated omission before
    done() sees it (stats_correct: for every sample longer than twice the
    mean request interval it adds synthetic samples), so with sub-millisecond
    requests a few scheduler stalls add many samples and raise the mean and
    the high percentiles. little_mean is the correction-free mean latency
    from Little's law (connections / throughput): every connection always
    has one request in flight. It is left out of capped runs, whose wrk
    duration includes idle time.
    """
    lat = res["latency_us"]
    errors = _errors(res)
    socket_errors = errors["connect"] + errors["read"] + errors["write"] + errors["timeout"]
    attempted = res["checked"] + socket_errors
    seconds = res["duration_us"] / 1e6
    return {
        "requests": res["requests"],
        "checked": res["checked"],
        "ok": res["ok"],
        "errors": errors,
        "error_total": res["non2xx"] + res["mismatches"] + socket_errors,
        "accuracy_pct": round(100.0 * res["ok"] / attempted, 4) if attempted else None,
        "first_failure": res["first_failure"] or None,
        "measured_s": round(seconds, 3),
        "tps": round(res["requests"] / seconds, 2) if seconds else None,
        "latency_ms": dict({k: round(lat[k] / 1000.0, 3)
                            for k in ("mean", "p50", "p95", "p99", "max", "min", "stdev")},
                           little_mean=(round(1000.0 * concurrency * seconds / res["requests"], 4)
                                        if res["requests"] and not capped else None)),
        "latency_distribution_ms": [[p, round(v / 1000.0, 3)]
                                    for p, v in res["latency_distribution_us"]],
        "wrk_threads": res["wrk_threads"],
        "started_epoch": round(res["started_at"], 3),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(res["started_at"])),
    }
