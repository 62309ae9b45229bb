#!/usr/bin/python3
"""An executor written with Debian's python3-grpcio from executor.proto,
with no code of libpolicyexec: any gRPC server that implements the service
can be an executor. It serves the four sample-python-* policies of the
design brief (and test-executor-pid) in the style of the published
gateway's Python executor: an asyncio gRPC server that hands each call to a
thread pool, one interpreter.

    interop_executor.py --listen HOST:PORT --gen-dir DIR [--threads N]

DIR holds policyexec/v1/executor_pb2.py (protoc --python_out). Prints
"listening HOST:PORT port N" once bound. Used by tests/grpc/test_grpc.c and
by bench_hooks --executor interop.
"""

import argparse
import asyncio
import concurrent.futures
import os
import signal
import sys

import grpc

PHASE_HEADER = b"x-sample-policy-phase"

# name -> (phase bit mask, needs request body, needs response body)
POLICIES = {
    "sample-python-request-header": (1 << 0, False, False),
    "sample-python-request-body": (1 << 1, True, False),
    "sample-python-response-header": (1 << 2, False, False),
    "sample-python-response-body": (1 << 3, False, True),
    "test-executor-pid": (1 << 0, False, False),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--gen-dir", required=True)
    ap.add_argument("--threads", type=int, default=4)
    args = ap.parse_args()
    sys.path.insert(0, args.gen_dir)
    from policyexec.v1 import executor_pb2 as pb  # generated at build time

    instances = {}  # instance id -> policy name

    def step(name, pb_phase):
        r = pb.StepResult()
        if name == "sample-python-request-header":
            r.headers.add(side=pb.SIDE_REQUEST, name=PHASE_HEADER, values=[b"request-header"])
        elif name == "sample-python-response-header":
            r.headers.add(side=pb.SIDE_RESPONSE, name=PHASE_HEADER, values=[b"response-header"])
        elif name == "sample-python-request-body":
            r.bodies.add(side=pb.SIDE_REQUEST, prefix=b"[sample-request-body]")
        elif name == "sample-python-response-body":
            r.bodies.add(side=pb.SIDE_RESPONSE, prefix=b"[sample-response-body]")
        elif name == "test-executor-pid":
            r.headers.add(side=pb.SIDE_REQUEST, name=b"x-executor-pid",
                          values=[str(os.getpid()).encode()])
        return r

    def serve(req):
        resp = pb.Response(id=req.id)
        kind = req.WhichOneof("body")
        if kind == "hello":
            resp.hello.protocol_version = pb.PROTOCOL_VERSION_CURRENT
            resp.hello.pid = os.getpid()
            resp.hello.runtime = "python3-grpcio " + grpc.__version__
            for name, (phases, rq, rs) in POLICIES.items():
                resp.hello.policies.add(name=name, version="1.0.0", phases=phases,
                                        needs_request_body=rq, needs_response_body=rs)
        elif kind == "create":
            ok = req.create.name in POLICIES and req.create.version == "1.0.0"
            if ok:
                instances[req.create.instance_id] = req.create.name
            resp.create.ok = ok
            if not ok:
                resp.create.error = f"unknown policy {req.create.name}@{req.create.version}"
        elif kind == "destroy":
            instances.pop(req.destroy.instance_id, None)
            resp.destroy.SetInParent()
        elif kind == "ping":
            resp.pong.instances = len(instances)
        elif kind == "run":
            run = req.run
            for spec in run.instances:  # create on miss
                if spec.name in POLICIES:
                    instances.setdefault(spec.instance_id, spec.name)
            names = [instances.get(i) for i in run.instance_ids]
            if None in names:
                resp.error.message = "unknown instance"
                return resp
            phases = list(run.step_phases) or [run.phase] * len(names)
            for name, phase in zip(names, phases):
                resp.run.steps.append(step(name, phase))
        else:
            resp.error.message = "request without a body"
        return resp

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=args.threads)

    async def call(request, context):
        # The published gateway's shape: the event loop hands the work to a
        # thread and awaits it.
        return await asyncio.get_running_loop().run_in_executor(pool, serve, request)

    def serving(_request):
        return b"\x08\x01"  # HealthCheckResponse{status: SERVING}

    async def health(request, context):
        # The same path as Call without the work: this architecture's floor.
        return await asyncio.get_running_loop().run_in_executor(pool, serving, request)

    async def run_server():
        server = grpc.aio.server()
        handler = grpc.method_handlers_generic_handler("policyexec.v1.Executor", {
            "Call": grpc.unary_unary_rpc_method_handler(
                call, request_deserializer=pb.Request.FromString,
                response_serializer=pb.Response.SerializeToString)})
        health_handler = grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
            "Check": grpc.unary_unary_rpc_method_handler(health)})
        server.add_generic_rpc_handlers((handler, health_handler))
        port = server.add_insecure_port(args.listen)
        await server.start()
        print(f"listening {args.listen} port {port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop(2)

    asyncio.run(run_server())


if __name__ == "__main__":
    main()
