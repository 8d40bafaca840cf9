"""CPU and resident memory of named processes, sampled with psutil over a benchmark run."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import psutil  # type: ignore[import-untyped]  # psutil ships no type information

MB = 1024 * 1024


@dataclass
class UsageCurve:
    """One process's samples: CPU in % of one core over each interval, RSS in bytes."""

    name: str
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


class UsageSampler:
    """Samples each process every `interval_s` seconds until cancelled; gone ones stop counting."""

    def __init__(self, pids: dict[str, int], interval_s: float = 5.0) -> None:
        self._interval_s = interval_s
        self._processes = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.curves = {name: UsageCurve(name) for name in pids}

    async def run(self) -> None:
        """Sample until cancelled (the first call of cpu_percent only starts its clock)."""
        for process in self._processes.values():
            with contextlib.suppress(psutil.Error):
                process.cpu_percent(None)
        while True:
            await asyncio.sleep(self._interval_s)
            for name, process in self._processes.items():
                with contextlib.suppress(psutil.Error):
                    self.curves[name].cpu.append(float(process.cpu_percent(None)))
                    self.curves[name].rss.append(int(process.memory_info().rss))
