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


def _start(name, template, run_dir, values, port):
    os.makedirs(run_dir, exist_ok=True)
    # nginx workers drop to an unprivileged user when started as root; they
    # must be able to reach the run dir.
    os.chmod(run_dir, 0o755)
    conf = _render(template, run_dir, dict(values, PORT=port))
    argv = [nginx_binary(), "-p", run_dir, "-c", conf, "-e", os.path.join(run_dir, "error.log")]
    proc = procs.Proc(name, argv, os.path.join(run_dir, "stdout.log"))
    proc.wait_port(port, timeout=10)
    return proc


def start_echo_backend(run_dir, port, workers):
    return _start("echo backend (nginx)", "nginx-echo.conf", run_dir,
                  {"ECHO_MODULE": echo_module(), "WORKERS": workers}, port)


def start_reverse_proxy(run_dir, port, workers, backend_port):
    return _start("reverse proxy (nginx)", "nginx-proxy.conf", run_dir,
                  {"WORKERS": workers, "BACKEND_PORT": backend_port}, port)


def start_lookup_service(run_dir, port, workers, delay_s=0.010):
    """The python-lookup profile's lookup service: JSON after delay_s."""
    return _start("lookup service (nginx)", "nginx-lookup.conf", run_dir,
                  {"ECHO_MODULE": echo_module(), "WORKERS": workers, "DELAY_S": delay_s}, port)
