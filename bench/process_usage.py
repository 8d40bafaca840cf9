"""CPU and resident memory of named processes, sampled with psutil over a benchmark run."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import psutil

MB = 1024 * 1024


@dataclass
class UsageCurve:
    """One process's samples, one every `interval_s`: CPU in % of one core, RSS in bytes."""

    name: str
    interval_s: float
    cpu: list[float] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)

    def cpu_mean(self) -> float:
        """Mean CPU over the run, % of one core."""
        return sum(self.cpu) / len(self.cpu) if self.cpu else float("nan")

    def rss_summary(self) -> tuple[float, float, float]:
        """RSS in MB: at the first sample, at the last, and the largest."""
        if not self.rss:
            return (float("nan"),) * 3
        return self.rss[0] / MB, self.rss[-1] / MB, max(self.rss) / MB

    def rss_curve(self, every_s: float) -> list[float]:
        """RSS in MB every `every_s` seconds of samples from the first, and at the last."""
        every = max(1, round(every_s / self.interval_s))
        marks = self.rss[::every]
        if self.rss and (len(self.rss) - 1) % every:
            marks.append(self.rss[-1])
        return [rss / MB for rss in marks]


def postmaster_pid(data_dir_part: str) -> int | None:
    """The pid of the PostgreSQL server whose command line names `data_dir_part`, if running."""
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if process.info["name"] == "postgres" and any(data_dir_part in a for a in cmdline):
            return int(process.pid)
    return None


class UsageSampler:
    """Samples each process every `interval_s` seconds until cancelled; gone ones stop counting.

    A process named in `trees` (a server forking a process per connection, as PostgreSQL
    does) counts with all its children, for CPU only: their resident sets share memory.
    """

    def __init__(
        self, pids: dict[str, int], trees: dict[str, int] | None = None, interval_s: float = 5.0
    ) -> None:
        self._interval_s = interval_s
        self._processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self._trees = {name: psutil.Process(pid) for name, pid in (trees or {}).items()}
        # Each child's Process object is kept, so cpu_percent measures from its last sample.
        self._members: dict[int, psutil.Process] = {}
        self.curves = {name: UsageCurve(name, interval_s) for name in [*pids, *self._trees]}

    def _tree_cpu(self, root: psutil.Process) -> float:
        total = 0.0
        with contextlib.suppress(psutil.Error):
            for process in [root, *root.children(recursive=True)]:
                known = self._members.setdefault(process.pid, process)
                with contextlib.suppress(psutil.Error):
                    total += float(known.cpu_percent(None))
        return total

    async def run(self) -> None:
        """Sample until cancelled (the first call of cpu_percent only starts its clock)."""
        for process in self._processes.values():
            with contextlib.suppress(psutil.Error):
                process.cpu_percent(None)
        for root in self._trees.values():
            self._tree_cpu(root)
        while True:
            await asyncio.sleep(self._interval_s)
            for name, root in self._trees.items():
                self.curves[name].cpu.append(self._tree_cpu(root))
            for name, process in self._processes.items():
                with contextlib.suppress(psutil.Error):
                    self.curves[name].cpu.append(float(process.cpu_percent(None)))
                    self.curves[name].rss.append(int(process.memory_info().rss))
