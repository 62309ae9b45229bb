"""The load test's profiles: what sits between wrk and the echo backend.

Chains follow the design brief (and the published report, with Go replaced
by native C): request-header policies are left out because the echo backend
does not echo request headers, so response-header appears twice to keep four
hooks per chain.
"""

import json

VERSION = "1.0.0"


def _chain(*names):
    return [{"name": n, "version": VERSION, "params": {}, "failure_mode": "closed"}
            for n in names]


# kind: "direct" = wrk -> backend; "nginx" = wrk -> nginx proxy -> backend;
#       "gateway" = wrk -> policyexec-gateway -> backend;
#       "nginx-module" = wrk -> nginx proxy + ngx_http_policyexec_module -> backend.
# policies: None for profiles whose responses must come back unchanged.
PROFILES = {
    "no-gateway": {"kind": "direct", "policies": None,
                   "title": "No gateway", "what": "wrk -> echo backend directly"},
    "nginx-proxy": {"kind": "nginx", "policies": None,
                    "title": "nginx reverse proxy",
                    "what": "anchor: nginx proxy_pass with upstream keepalive, "
                            "as many workers as gateway threads"},
    "no-policies": {"kind": "gateway", "policies": [],
                    "title": "No policies", "what": "gateway with an API and an empty chain"},
    "native-4": {"kind": "gateway",
                 "policies": _chain("sample-native-response-header",
                                    "sample-native-request-body",
                                    "sample-native-response-header",
                                    "sample-native-response-body"),
                 "title": "Native 4-policy",
                 "what": "native resp-header -> req-body -> resp-header -> resp-body"},
    "python-4": {"kind": "gateway",
                 "policies": _chain("sample-python-response-header",
                                    "sample-python-request-body",
                                    "sample-python-response-header",
                                    "sample-python-response-body"),
                 "title": "Python 4-policy",
                 "what": "Python resp-header -> req-body -> resp-header -> resp-body"},
    "mix-4": {"kind": "gateway",
              "policies": _chain("sample-native-response-header",
                                 "sample-python-request-body",
                                 "sample-native-response-body",
                                 "sample-python-response-header"),
              "title": "Mix 4-policy",
              "what": "native resp-header -> Python req-body -> native resp-body "
                      "-> Python resp-header"},
    # A policy that waits on the network: sample-python-lookup awaits a
    # lookup service answering after 10 ms (started per cell, see
    # harness/nginx.py); native steps around it give the checked answer.
    "python-lookup": {"kind": "gateway", "lookup": True,
                      "policies": [{"name": "sample-python-lookup", "version": VERSION,
                                    "failure_mode": "closed", "timeout_ms": 1000,
                                    "params": {"url": "http://127.0.0.1:@LOOKUP_PORT@/v1/users",
                                               "header": "x-user-name"}}]
                      + _chain("sample-native-response-header",
                               "sample-native-request-body",
                               "sample-native-response-body"),
                      "title": "Python lookup (async, 10 ms)",
                      "what": "Python lookup awaiting a 10 ms HTTP service -> native "
                              "resp-header -> req-body -> resp-body"},
}

# The nginx module's profiles: the anchor (nginx-proxy) with the module and
# the same chains as the gateway profiles.
for _name, _src in (("ngx-empty", "no-policies"), ("ngx-native-4", "native-4"),
                    ("ngx-python-4", "python-4"), ("ngx-mix-4", "mix-4")):
    PROFILES[_name] = {"kind": "nginx-module", "policies": PROFILES[_src]["policies"],
                       "title": "nginx module: " + PROFILES[_src]["title"].lower(),
                       "what": "nginx-proxy + ngx_http_policyexec_module, chain as " + _src}

ORDER = ["no-gateway", "nginx-proxy", "no-policies", "native-4", "python-4", "mix-4",
         "ngx-empty", "ngx-native-4", "ngx-python-4", "ngx-mix-4"]
# Not in the default matrix (its own service, its own concurrency levels):
# bench/loadtest/run.sh --profiles python-lookup --concurrency 10,25,50
EXTRA = ["python-lookup"]


def policies(profile, lookup_port=None):
    """The chain of a profile, with the lookup service's port filled in."""
    chain = PROFILES[profile]["policies"]
    if chain is None or lookup_port is None:
        return chain
    text = json.dumps(chain).replace("@LOOKUP_PORT@", str(lookup_port))
    return json.loads(text)


def expects_policies(profile):
    return bool(PROFILES[profile]["policies"])
