"""NACK reporting that a misbehaving proxy cannot turn into a log flood.

A proxy that rejects a config NACKs every push, and a broken client may NACK in
a loop with a large error detail (5,000 NACKs of 16 KiB once wrote 82 MB of log
in under a second). Per proxy the first NACK is logged, then at most one line
per interval saying how many were held back; the detail is truncated in the log
and in what /debug/syncz keeps. Every NACK is still counted in the metrics."""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable

log = logging.getLogger("istiod_py.xds")

# Characters of an error detail kept: in a log line, and in the stored last NACK.
LOG_DETAIL_CHARS = 1024
STORED_DETAIL_CHARS = 4096


def truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


class NackLog:
    def __init__(
        self,
        interval: float = 10.0,
        max_proxies: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.max_proxies = max_proxies
        self._clock = clock
        # proxy id -> (when its last NACK line was logged, NACKs held back since)
        self._proxies: collections.OrderedDict[str, tuple[float, int]] = collections.OrderedDict()

    def nack(self, proxy_id: str, type_name: str, version: str, detail: str) -> None:
        now = self._clock()
        last = self._proxies.get(proxy_id)
        if last is not None and now - last[0] < self.interval:
            self._proxies[proxy_id] = (last[0], last[1] + 1)
            return
        held = last[1] if last is not None else 0
        self._proxies[proxy_id] = (now, 0)
        self._proxies.move_to_end(proxy_id)
        while len(self._proxies) > self.max_proxies:
            self._proxies.popitem(last=False)
        more = f" ({held} more NACKs from this proxy in the last {self.interval:g}s not logged)" if held else ""
        log.warning(
            "%s rejected %s version %s: %s%s",
            proxy_id,
            type_name,
            version,
            truncate(detail, LOG_DETAIL_CHARS),
            more,
        )
