"""What a scrape returns: the registry of a process tree, merged from its multiprocess directory, as text.

In multiprocess mode a registry is built per scrape (prometheus-client's advice): MultiProcessCollector reads
every process's files at collect time, after dead processes' live gauges were pruned. Outside multiprocess mode
(a single process: tests, `flask run`) the process's own default registry is served instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from monitoring.multiproc import current_dir, prune_dead


class _ProcessTree(Collector):
    """Every process of one tree: prune the dead's live gauges, then merge all files."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._merged = MultiProcessCollector(None, str(path))

    def collect(self) -> Iterable[Metric]:
        prune_dead(self.path)
        return self._merged.collect()


class _ThisProcess(Collector):
    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def registry(*extra: Collector, path: Path | None = None) -> CollectorRegistry:
    """The process tree's metrics (directory `path`, else this process's multiprocess dir, else this process
    alone) plus `extra` collectors (the API adds the Redis state collector)."""
    reg = CollectorRegistry(auto_describe=False)
    target = path or current_dir()
    reg.register(_ProcessTree(target) if target is not None else _ThisProcess())
    for collector in extra:
        reg.register(collector)
    return reg


def render(reg: CollectorRegistry, accept: str = "") -> tuple[bytes, str]:
    """The body and Content-Type a scraper asked for (`Accept`): text 0.0.4 by default, or OpenMetrics, as
    prometheus-client's own HTTP server negotiates it."""
    encoder, content_type = choose_encoder(accept)
    return encoder(reg), content_type
