"""Starting and stopping the processes of a cell, on loopback ports.

Every process is started in its own session (its own process group), so
stopping it also stops its children (nginx workers, policyexec-pyworker
processes) by group id: we never signal anything we did not start.
A registry of live processes lets the driver stop everything on exit.
"""
import os
import signal
import socket
import subprocess
import time

HOST = "127.0.0.1"

_live = []  # Proc objects not yet stopped, for stop_all()


def free_port():
    """A port that was free on 127.0.0.1 a moment ago (bind test)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_accepts(port, timeout=0.2):
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


class Proc:
    """One started process (and its process group)."""

    def __init__(self, name, argv, log_path, cwd=None, env=None):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.popen = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=cwd, env=env, start_new_session=True)
        self.pid = self.popen.pid
        _live.append(self)

    def alive(self):
        return self.popen.poll() is None

    def wait_port(self, port, timeout):
        """Wait until the process accepts connections on port; raise if it
        exits or the bounded wait ends."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode} "
                                   f"before listening on {port}; see {self.log_path}")
            if port_accepts(port):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not listen on {port} within {timeout}s; "
                           f"see {self.log_path}")

    def stop(self, grace=5.0):
        """SIGTERM the process group, then SIGKILL after a bounded grace."""
        if self in _live:
            _live.remove(self)
        try:
            if self.alive():
                _signal_group(self.pid, signal.SIGTERM)
                try:
                    self.popen.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    _signal_group(self.pid, signal.SIGKILL)
                    self.popen.wait(timeout=grace)
            # Children that outlived the leader (same group) get the same end.
            _signal_group(self.pid, signal.SIGKILL)
        finally:
            self._log.close()
        return self.popen.returncode


def _signal_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def stop_all():
    for p in list(reversed(_live)):
        try:
            p.stop(grace=2.0)
        except Exception:  # best effort at exit: keep stopping the others
            pass
