"""A run's results, indexed by (profile, payload bytes, concurrency)."""
import json
import os

from harness import profiles


class Run:
    def __init__(self, out_dir):
        self.out = out_dir
        self.records = []
        with open(os.path.join(out_dir, "results.jsonl")) as f:
            for line in f:
                if line.strip():
                    self.records.append(json.loads(line))
        self.machine = _load_json(os.path.join(out_dir, "machine.json"))
        self.options = _load_json(os.path.join(out_dir, "run.json"))
        self.by_key = {(r["profile"], r["payload_bytes"], r["concurrency"]): r
                       for r in self.records}
        present = {r["profile"] for r in self.records}
        self.profiles = [p for p in profiles.ORDER if p in present]
        self.sweep_payload = self.options.get("payload", 50)
        self.concurrency = sorted({r["concurrency"] for r in self.records
                                   if r["payload_bytes"] == self.sweep_payload})
        self.extra_concurrency = self.options.get("extra_concurrency") or [1]
        self.extra_payloads = sorted({r["payload_bytes"] for r in self.records
                                      if r["payload_bytes"] != self.sweep_payload})

    def ok(self, profile, payload, concurrency):
        """The cell's record if it ran to the end, else None."""
        r = self.by_key.get((profile, payload, concurrency))
        return r if r and r.get("status") == "ok" else None

    def not_ok(self):
        return [r for r in self.records if r.get("status") != "ok"]

    @property
    def peak_concurrency(self):
        return max(self.concurrency) if self.concurrency else None


def _load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def title(profile):
    return profiles.PROFILES[profile]["title"]


def is_gateway(profile):
    return profiles.PROFILES[profile]["kind"] == "gateway"
