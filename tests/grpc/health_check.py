#!/usr/bin/python3
"""grpc.health.v1.Health/Check against ADDR, as an orchestrator's probe does
(the request and reply are two tiny messages, encoded by hand so that no
generated code is needed). Exit 0 when the status is SERVING (1)."""

import sys

import grpc

with grpc.insecure_channel(sys.argv[1]) as channel:
    check = channel.unary_unary("/grpc.health.v1.Health/Check")
    reply = check(b"", timeout=10)  # HealthCheckRequest{service: ""}
    sys.exit(0 if reply == b"\x08\x01" else 1)
