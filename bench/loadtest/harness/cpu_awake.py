"""Keeps the CPUs out of idle states for the length of a run.

On this VM an idle vCPU halts and takes tens of microseconds to wake, which
is longer than a whole request through the echo backend: at low concurrency
the figures then measure wake-ups, not the software, and they jump whenever
something else happens to keep the CPUs busy. A PM QoS request (write 0 to
/dev/cpu_dma_latency and keep the file open, as tuned's latency-performance
profile does) makes idle CPUs poll instead. The kernel drops the request as
soon as the file is closed, at the latest when this process exits.
"""
import os
import struct

DEVICE = "/dev/cpu_dma_latency"


def keep_awake():
    """(fd or None, description of the state for the report)."""
    try:
        fd = os.open(DEVICE, os.O_WRONLY)  # not inherited by children
        os.write(fd, struct.pack("i", 0))
        return fd, f"kept awake: PM QoS {DEVICE} = 0 µs for the run"
    except OSError as e:
        return None, f"idle allowed ({DEVICE}: {e.strerror})"


def release(fd):
    if fd is not None:
        os.close(fd)
