"""The results: one table of figures beside their references, and bench/RESULTS.md."""
from __future__ import annotations

import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path


@dataclass(frozen=True)
class Row:
    """One figure of the service, its reference, their ratio and the target the ratio must meet.

    `met` is None for rows that are shown for context and have no target.
    """

    figure: str
    value: str
    reference: str = ""
    reference_value: str = ""
    ratio: float | None = None
    target: str = ""
    met: bool | None = None

    def cells(self) -> list[str]:
        ratio = f"{self.ratio:.2f}" if self.ratio is not None else ""
        verdict = {True: "met", False: "MISSED", None: ""}[self.met]
        return [self.figure, self.value, self.reference, self.reference_value, ratio, self.target, verdict]


HEADERS = ["Figure", "Value", "Reference", "Reference value", "Ratio", "Target", "Result"]


def at_least(threshold: float) -> tuple[str, Callable[[float], bool]]:
    return f"ratio >= {threshold:.2f}", lambda ratio: ratio >= threshold


def at_most(threshold: float) -> tuple[str, Callable[[float], bool]]:
    return f"ratio <= {threshold:.2f}", lambda ratio: ratio <= threshold


def text_table(rows: Sequence[Row]) -> str:
    """The table for a terminal: columns padded to their widest cell."""
    grid = [HEADERS, *(row.cells() for row in rows)]
    widths = [max(len(line[column]) for line in grid) for column in range(len(HEADERS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in grid]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def markdown_table(rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def machine_description(server: dict[str, str], redis_version: str) -> list[str]:
    """CPU, memory and the versions that matter, as Markdown list items."""
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal:"))
    versions = ", ".join(f"{name} {metadata.version(name)}"
                         for name in ("flask", "sqlalchemy", "psycopg", "psycopg-pool", "granian", "gunicorn", "werkzeug"))
    return [
        f"CPU: {model}, {os.cpu_count()} cores; RAM: {mem_kib / 1024 / 1024:.1f} GiB; "
        f"Linux {platform.release()}",
        f"PostgreSQL {server['server_version']} (same machine; shared_buffers {server['shared_buffers']}, "
        f"work_mem {server['work_mem']}, synchronous_commit {server['synchronous_commit']}, "
        f"max_parallel_workers_per_gather {server['max_parallel_workers_per_gather']}); Redis {redis_version}",
        f"Python {platform.python_version()}; {versions}",
    ]


@dataclass
class Results:
    """Everything one run found, ready to print and to write as RESULTS.md."""

    machine: list[str]
    settings: list[str]
    rows: list[Row] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)
    plans: list[tuple[str, str]] = field(default_factory=list)
    profiles: list[tuple[str, str]] = field(default_factory=list)

    def markdown(self, command: str, duration_s: float, analysis: str) -> str:
        """The report; `analysis` is the section a person wrote about the figures (`kept_analysis`)."""
        parts = [
            "# Benchmark results",
            "",
            f"Written by `{command}` (what `make bench` runs; the whole run took {duration_s / 60:.1f} minutes). Every figure and its "
            "reference come from this one run on this one machine; ratios compare them, absolute numbers only "
            "describe this machine. See [docs/performance.md](../docs/performance.md) for what each figure measures.",
            "",
            "## Machine",
            "",
            *(f"- {line}" for line in self.machine),
            "",
            "## Settings",
            "",
            *(f"- {line}" for line in self.settings),
            "",
            "## Figures",
            "",
            markdown_table(self.rows),
            "",
            *(f"- {line}" for line in self.details),
        ]
        if self.misses:
            parts += ["", "## Missed targets", "", *self.misses]
        parts += ["", ANALYSIS_HEADING, "", analysis.strip()]
        if self.profiles:
            parts += ["", "## Profiles of the write endpoints", ""]
            for title, text in self.profiles:
                parts += [f"### {title}", "", text, ""]
        if self.plans:
            parts += ["", "## Query plans at the seeded size", ""]
            for title, plan in self.plans:
                parts += [f"### {title}", "", "```", plan, "```", ""]
        return "\n".join(parts).rstrip() + "\n"


ANALYSIS_HEADING = "## What the figures mean"
NO_ANALYSIS = ("Not written yet. A person reads the figures, the profiles and the plans below and says here what "
               "they mean and why a target was missed; `make bench` keeps this section as it finds it.")


def kept_analysis(report: Path) -> str:
    """The section a person wrote in an earlier report, to carry into the new one (the figures are the run's)."""
    text = report.read_text() if report.exists() else ""
    if ANALYSIS_HEADING not in text:
        return NO_ANALYSIS
    section = text.split(ANALYSIS_HEADING, 1)[1]
    following = section.find("\n## ")
    return (section if following < 0 else section[:following]).strip() or NO_ANALYSIS
