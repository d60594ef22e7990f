"""Fault injection and the request log of the side API (test scaffolding, no auth).

A fault matches requests by method and a regex on ``path?query``; it answers a Kubernetes
``Status`` of its ``status`` code (``after``: the request is applied first, like a lost
response), or sits ``delay`` seconds and drops the connection (``timeout``), ``count``
times (-1: until cleared). The log keeps the last 20,000 API requests, each logged before
its answer leaves so a client reading the log right after its call finds it.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass

from .errors import JSON, REASONS, ApiError


@dataclass
class Fault:
    id: int
    path_regex: str
    method: str = "*"
    status: int = 500
    count: int = 1  # -1: forever
    delay: float = 0.0
    timeout: bool = False
    after: bool = False
    message: str = ""

    def matches(self, method: str, target: str) -> bool:
        return (self.method in ("*", method)) and re.search(self.path_regex, target) is not None

    def error(self) -> ApiError:
        reason = REASONS.get(self.status, "InternalError")
        return ApiError(self.status, reason, self.message or f"injected fault: {reason}")


class FaultsAndLog:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.faults: list[Fault] = []
        self.fault_seq = 0
        self.requests: list[JSON] = []
        self.request_seq = 0

    def add(self, spec: JSON) -> Fault:
        with self.lock:
            self.fault_seq += 1
            fault = Fault(id=self.fault_seq, path_regex=str(spec["path_regex"]),
                          method=str(spec.get("method") or "*"),
                          status=int(spec.get("status", 500)), count=int(spec.get("count", 1)),
                          delay=float(spec.get("delay", 0)), timeout=bool(spec.get("timeout")),
                          after=bool(spec.get("after")), message=str(spec.get("message", "")))
            re.compile(fault.path_regex)
            self.faults.append(fault)
            return fault

    def take(self, method: str, target: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.count != 0 and fault.matches(method, target):
                    if fault.count > 0:
                        fault.count -= 1
                    if fault.count == 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def log(self, entry: JSON) -> None:
        with self.lock:
            self.request_seq += 1
            entry["seq"] = self.request_seq
            entry.setdefault("at", time.monotonic())
            self.requests.append(entry)
            del self.requests[:-20_000]

    def clear(self) -> None:
        with self.lock:
            self.faults.clear()
            self.requests.clear()
