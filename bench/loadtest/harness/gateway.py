"""The reference gateway (examples/gateway) as a user runs it: a JSON config
file, a fresh process per cell, and the API created through its admin API."""
import json
import os
import time
import urllib.error
import urllib.request

from . import procs

API_NAME = "loadtest-echo"
API_CONTEXT = "/loadtest"


def paths(build_dir, source_dir):
    """Where the gateway, the sample plugin and the Python samples live."""
    return {
        "binary": os.path.join(build_dir, "bin", "policyexec-gateway"),
        "worker": os.path.join(build_dir, "bin", "policyexec-pyworker"),
        "plugin": os.path.join(build_dir, "examples", "policies", "sample_native_policies.so"),
        "python_paths": [os.path.join(source_dir, "examples", "policies", "python")],
    }


def missing(build_dir, source_dir):
    """Names of the files a gateway cell needs that do not exist (yet)."""
    p = paths(build_dir, source_dir)
    need = [p["binary"], p["worker"], p["plugin"]] + p["python_paths"]
    return [f for f in need if not os.path.exists(f)]


def config(build_dir, source_dir, port, admin_port, threads, py_workers, py_timeout_ms,
           sched_batch=True):
    """The gateway's config file: listeners, engine, no API yet (the cell
    creates it through the admin API). Every gateway profile uses the same
    config, as one deployed gateway would: the Python pool starts even for
    chains without Python steps, and its idle workers are sampled too."""
    p = paths(build_dir, source_dir)
    return {
        "listen": f"{procs.HOST}:{port}",
        "admin": f"{procs.HOST}:{admin_port}",
        "threads": threads,
        # As in examples/gateway/sample-config.json: loop thread i and Python
        # worker i pinned to CPU i (the nginx anchor pins its workers too).
        "cpu_affinity": True,
        # As in the sample config: SCHED_BATCH for the gateway and its
        # workers (--no-sched-batch turns it off, for comparison).
        "sched_batch": sched_batch,
        # The worker of the same build dir, named so a stale installed one
        # can never be picked up instead.
        "python": {"workers": py_workers, "timeout_ms": py_timeout_ms,
                   "worker": p["worker"], "paths": p["python_paths"]},
        "plugins": [p["plugin"]],
        "apis": [],
    }


def start(build_dir, source_dir, run_dir, cfg):
    os.makedirs(run_dir, exist_ok=True)
    conf = os.path.join(run_dir, "gateway.json")
    with open(conf, "w") as f:
        json.dump(cfg, f, indent=2)
    argv = [paths(build_dir, source_dir)["binary"], "--config", conf]
    proc = procs.Proc("policyexec-gateway", argv, os.path.join(run_dir, "gateway.log"),
                      cwd=run_dir)
    admin_port = int(cfg["admin"].rsplit(":", 1)[1])
    proc.wait_port(admin_port, timeout=15)
    wait_healthy(proc, admin_port, timeout=15)
    return proc


def _admin(admin_port, method, path, body=None, timeout=10):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://{procs.HOST}:{admin_port}{path}", data=data,
                                 method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_healthy(proc, admin_port, timeout):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"gateway exited; see {proc.log_path}")
        try:
            status, body = _admin(admin_port, "GET", "/health", timeout=2)
            if status == 200:
                return
            last = f"{status} {body[:200]!r}"
        except OSError as e:
            last = str(e)
        time.sleep(0.1)
    raise RuntimeError(f"gateway /health not OK within {timeout}s: {last}")


def create_api(admin_port, backend_port, policies):
    """POST /apis with the profile's chain, as a user would."""
    api = {"name": API_NAME, "context": API_CONTEXT,
           "upstream": f"http://{procs.HOST}:{backend_port}",
           "policies": policies}
    status, body = _admin(admin_port, "POST", "/apis", api)
    if status not in (200, 201):
        raise RuntimeError(f"POST /apis answered {status}: {body[:500]!r}")
    return api


def metrics(admin_port):
    """GET /metrics text (kept beside the cell's results), or None."""
    try:
        status, body = _admin(admin_port, "GET", "/metrics", timeout=5)
        return body.decode(errors="replace") if status == 200 else None
    except OSError:
        return None
