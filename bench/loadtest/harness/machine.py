"""The machine and the versions a run used, read when the run starts."""
import os
import platform
import re
import subprocess
import time


def _cmd(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (r.stdout + r.stderr).strip()
    except (OSError, subprocess.TimeoutExpired):
        return None


def _first_line(text):
    return text.splitlines()[0].strip() if text else None


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def mem_total_gib():
    try:
        with open("/proc/meminfo") as f:
            kb = int(re.search(r"MemTotal:\s+(\d+)", f.read()).group(1))
            return round(kb / 1024 / 1024, 1)
    except (OSError, AttributeError):
        return None


def compiler(build_dir):
    """The C compiler of the build, from its CMake cache."""
    cc = None
    try:
        with open(os.path.join(build_dir, "CMakeCache.txt")) as f:
            for line in f:
                if line.startswith("CMAKE_C_COMPILER:"):
                    cc = line.split("=", 1)[1].strip()
    except OSError:
        pass
    return _first_line(_cmd([cc or "cc", "--version"]))


def git_revision(source_dir):
    rev = _cmd(["git", "-C", source_dir, "rev-parse", "--short", "HEAD"])
    if not rev or "fatal" in rev:
        return "working tree without commits" if os.path.isdir(os.path.join(source_dir, ".git")) else None
    dirty = _cmd(["git", "-C", source_dir, "status", "--porcelain", "--untracked-files=no"])
    return rev + (" (with uncommitted changes)" if dirty else "")


def python_embed():
    """The CPython that policyexec-pyworker embeds (pkg-config python3-embed,
    as the build finds it), with the matching interpreter's full version."""
    embed = _cmd(["pkg-config", "--modversion", "python3-embed"])
    full = _first_line(_cmd(["/usr/bin/python3", "--version"]))
    if embed and full and full.replace("Python ", "").startswith(embed):
        return full + " (python3-embed " + embed + ")"
    return ("python3-embed " + embed) if embed else full


def build_type(build_dir):
    try:
        with open(os.path.join(build_dir, "CMakeCache.txt")) as f:
            m = re.search(r"^CMAKE_BUILD_TYPE:\w+=(.*)$", f.read(), re.M)
            return (m.group(1) or "(none)") if m else None
    except OSError:
        return None


def describe(build_dir, source_dir):
    nginx = _cmd(["nginx", "-v"])
    wrk = _first_line(_cmd(["wrk", "--version"]))
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": mem_total_gib(),
        "kernel": platform.release(),
        "os": _os_name(),
        "compiler": compiler(build_dir),
        "build_type": build_type(build_dir),
        "python": python_embed(),
        "nginx": nginx.replace("nginx version: ", "") if nginx else None,
        "wrk": re.sub(r"\s*Copyright.*", "", wrk) if wrk else None,
        "gnuplot": _first_line(_cmd(["gnuplot", "--version"])),
        "libpolicyexec": git_revision(source_dir),
    }


def _os_name():
    try:
        with open("/etc/os-release") as f:
            m = re.search(r'^PRETTY_NAME="?([^"\n]*)', f.read(), re.M)
            return m.group(1) if m else None
    except OSError:
        return None
