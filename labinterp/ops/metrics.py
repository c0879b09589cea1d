"""Prometheus metrics (official client): requests, latency, interpretations, critical results.

Under gunicorn the metrics are multiprocess: gunicorn.conf.py points PROMETHEUS_MULTIPROC_DIR at a
fresh directory before the app is imported, every worker writes its own file there, and /metrics
adds them up, so a scrape sees the whole instance whichever worker answers it.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

from labinterp.core.engine import Tally

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter("labinterp_http_requests", "HTTP requests answered, by route template, method and status.",
                   ("route", "method", "status"))
LATENCY = Histogram("labinterp_http_request_duration_seconds", "Time to answer a request, by route template.",
                    ("route", "method"), buckets=LATENCY_BUCKETS)
INTERPRETATIONS = Counter("labinterp_interpretations", "Results interpreted (derived ones included), "
                          "by analyte and flag (flag 'none' when no flag could be given).", ("analyte", "flag"))
CRITICAL = Counter("labinterp_critical_results", "Results at or beyond a critical limit, by analyte.",
                   ("analyte",))


_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}  # labelled counters, looked up once per label set


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    known = method if method in METHODS else "OTHER"  # a client's made-up method must not grow the table
    found = _children.get((route, known, status))
    if found is None:
        found = _children[(route, known, status)] = (REQUESTS.labels(route, known, str(status)),
                                                     LATENCY.labels(route, known))
    found[0].inc()
    found[1].observe(seconds)


_counted: dict[tuple[str, str | None, bool], tuple[Any, Any]] = {}  # labelled counters, looked up once


def count_interpretation(analyte: str, flag: str | None, critical: bool, count: int = 1) -> None:
    """Interpreted results of one analyte, flag and criticality (one, unless `count` says more)."""
    found = _counted.get((analyte, flag, critical))
    if found is None:
        found = _counted[(analyte, flag, critical)] = (INTERPRETATIONS.labels(analyte, flag or "none"),
                                                       CRITICAL.labels(analyte) if critical else None)
    found[0].inc(count)
    if found[1] is not None:
        found[1].inc(count)


def observe_tally(tally: Tally) -> None:
    """The engine's tally of one interpretation (a panel, a batch or a file chunk)."""
    for (analyte, flag, critical), count in tally.items():
        count_interpretation(analyte, flag, critical, count)


def exposition(accept: str | None) -> tuple[bytes, str]:
    """The metrics text and its content type; the sum over every worker in multiprocess mode."""
    encoder, content_type = choose_encoder(accept or "")
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return encoder(registry), content_type
    return encoder(REGISTRY), content_type


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """'127.0.0.1/32,::1/128' -> networks; a bad entry stops start-up naming the entry."""
    networks = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"LABINTERP_METRICS_ALLOW: '{entry}' is not a network (CIDR)") from None
    return tuple(networks)


def client_allowed(remote_addr: str | None, networks: Iterable[Network]) -> bool:
    if not remote_addr:
        return False
    try:
        address = ipaddress.ip_address(remote_addr)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)
