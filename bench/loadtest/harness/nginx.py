"""The two nginx roles of the load test, each a private foreground process:
the echo backend (every profile's upstream) and the reverse-proxy anchor."""
import os
import re
import shutil

from . import procs

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATES = os.path.join(HERE, "templates")

# Debian's libnginx-mod-http-echo installs the module here.
ECHO_MODULE_CANDIDATES = [
    "/usr/lib/nginx/modules/ngx_http_echo_module.so",
    "/usr/share/nginx/modules/ngx_http_echo_module.so",
]


def nginx_binary():
    return shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)


def echo_module():
    for path in ECHO_MODULE_CANDIDATES:
        if os.path.exists(path):
            return path
    return None


def _render(template, run_dir, values):
    with open(os.path.join(TEMPLATES, template)) as f:
        text = f.read()
    values = dict(values, RUN_DIR=run_dir)
    for key, value in values.items():
        text = text.replace(f"@{key}@", str(value))
    leftover = re.findall(r"@[A-Z_]+@", text)
    if leftover:
        raise RuntimeError(f"{template}: unreplaced markers {leftover}")
    conf = os.path.join(run_dir, "nginx.conf")
    with open(conf, "w") as f:
        f.write(text)
    return conf


def _start(name, template, run_dir, values, port, env=None):
    os.makedirs(run_dir, exist_ok=True)
    # nginx workers drop to an unprivileged user when started as root; they
    # must be able to reach the run dir.
    os.chmod(run_dir, 0o755)
    conf = _render(template, run_dir, dict(values, PORT=port))
    argv = [nginx_binary(), "-p", run_dir, "-c", conf, "-e", os.path.join(run_dir, "error.log")]
    proc = procs.Proc(name, argv, os.path.join(run_dir, "stdout.log"), env=env)
    proc.wait_port(port, timeout=30)
    return proc


def start_echo_backend(run_dir, port, workers):
    return _start("echo backend (nginx)", "nginx-echo.conf", run_dir,
                  {"ECHO_MODULE": echo_module(), "WORKERS": workers}, port)


def start_reverse_proxy(run_dir, port, workers, backend_port):
    return _start("reverse proxy (nginx)", "nginx-proxy.conf", run_dir,
                  {"WORKERS": workers, "BACKEND_PORT": backend_port}, port)


def module_paths(build_dir):
    """The module and the library it links, as built in build_dir."""
    return {"module": os.path.join(build_dir, "nginx", "modules", "ngx_http_policyexec_module.so"),
            "libdir": os.path.join(build_dir, "lib")}


def start_module_proxy(run_dir, port, workers, backend_port, build_dir, source_dir, policies,
                       py_workers, py_timeout_ms, sched_batch=True):
    """The anchor with ngx_http_policyexec_module and @p policies on its location."""
    import json
    from . import gateway
    gw = gateway.paths(build_dir, source_dir)
    chain = json.dumps(policies, separators=(",", ":"))
    values = {"WORKERS": workers, "BACKEND_PORT": backend_port,
              "MODULE": module_paths(build_dir)["module"], "PLUGIN": gw["plugin"],
              "PYTHON_PATH": gw["python_paths"][0], "PYWORKER": gw["worker"],
              "PY_WORKERS": max(1, py_workers // max(1, workers)),
              "PY_TIMEOUT_MS": py_timeout_ms, "CHAIN": chain,
              "SCHED_BATCH": "on" if sched_batch else "off"}
    env = dict(os.environ, LD_LIBRARY_PATH=module_paths(build_dir)["libdir"])
    return _start("reverse proxy + policyexec module (nginx)", "nginx-module.conf", run_dir,
                  values, port, env=env)
def start_lookup_service(run_dir, port, workers, delay_s=0.010):
    """The python-lookup profile's lookup service: JSON after delay_s."""
    return _start("lookup service (nginx)", "nginx-lookup.conf", run_dir,
                  {"ECHO_MODULE": echo_module(), "WORKERS": workers, "DELAY_S": delay_s}, port)
