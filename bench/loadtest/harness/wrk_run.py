"""Runs wrk with validate.lua and returns what its done() reported.

Latency figures come from wrk's own latency distribution (microseconds);
throughput is wrk's completed requests over its measured duration.
"""
import json
import os
import resource
import shutil
import signal
import subprocess
import threading
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VALIDATE_LUA = os.path.join(HERE, "validate.lua")
RESULT_MARK = "LOADTEST_RESULT "
THREAD_DONE_MARK = "LOADTEST_THREAD_DONE"


def wrk_binary():
    return shutil.which("wrk")


def run(url, payload_file, expect_policies, connections, threads, duration_s,
        log_path, max_requests_per_thread=0):
    """Run one wrk load; return the parsed LOADTEST_RESULT dict.

    wrk needs at least one connection per thread, so threads is capped at
    connections. With max_requests_per_thread, wrk is ended (SIGINT) as soon
    as every thread has reached it; duration_s stays the upper bound.
    """
    threads = max(1, min(threads, connections))
    duration_s = int(duration_s)  # wrk's -d takes whole seconds
    argv = [wrk_binary(), f"-t{threads}", f"-c{connections}", f"-d{duration_s}s",
            "--timeout", "10s", "-s", VALIDATE_LUA, url, "--",
            payload_file, "policies" if expect_policies else "plain",
            str(max_requests_per_thread)]
    started = time.time()
    # wrk is the only child reaped during the run, so the children's CPU
    # time grows by exactly wrk's own.
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    popen = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    # A hard bound on top of wrk's own: its duration plus time to connect and
    # to print; a wrk that hangs is killed and the run reported as failed.
    killer = threading.Timer(duration_s + 30, lambda: _kill(popen))
    killer.start()
    lines, done_threads = [], 0
    try:
        for line in popen.stdout:
            lines.append(line)
            if line.strip() == THREAD_DONE_MARK:
                done_threads += 1
                if done_threads == threads and popen.poll() is None:
                    popen.send_signal(signal.SIGINT)
        popen.wait()
    finally:
        killer.cancel()
        if popen.poll() is None:
            _kill(popen)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    output = "".join(lines)
    with open(log_path, "w") as f:
        f.write(" ".join(argv) + "\n" + output)
    for line in lines:
        if line.startswith(RESULT_MARK):
            result = json.loads(line[len(RESULT_MARK):])
            result["wrk_threads"] = threads
            result["wrk_cpu_s"] = round(wrk_cpu_s, 3)
            result["started_at"] = started
            return result
    raise RuntimeError(f"wrk gave no result (exit {popen.returncode}); see {log_path}")


def _kill(popen):
    try:
        os.killpg(popen.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
