"""Statistics, the machine description and the Markdown tables of a benchmark run."""

from __future__ import annotations

import math
import os
import platform
import statistics
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from flink_task import __version__, localflink

MIB = 1024 * 1024
MAX_SHOWN_RATIO = 100.0


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """Return median, p90 (nearest rank), min and max of a non-empty list of samples."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(0.9 * len(ordered)))
    return {
        "median": statistics.median(ordered),
        "p90": ordered[rank - 1],
        "min": ordered[0],
        "max": ordered[-1],
    }


def describe_machine(flink_version: str | None) -> dict[str, Any]:
    """Return the hardware and software versions the run measured, read now."""
    java = localflink.find_java_tool("java")
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpuModel": _cpu_model(),
        "cores": os.cpu_count(),
        "memoryGiB": round(_memory_bytes() / 1024**3, 1),
        "loadAverage": [round(value, 2) for value in os.getloadavg()],
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "java": java.version,
        "flink": flink_version or f"{localflink.FLINK_VERSION} (not started)",
        "flinkTask": __version__,
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def render(report: dict[str, Any]) -> str:
    """Return the whole report as Markdown: the machine, then one table per benchmark."""
    sections = [_machine_table(report["machine"], report.get("loadAverageAfter"))]
    results = report["results"]
    if "lifecycle" in results:
        sections.append(_lifecycle_table(results["lifecycle"]))
    if "notice" in results:
        sections.append(_notice_table(results["notice"]))
    if "coldstart" in results:
        sections.append(_cold_start_table(results["coldstart"]))
    if "memory" in results:
        sections.append(_memory_table(results["memory"]))
    sections.append(f"Whole run: {report['durationSeconds']:.0f} s.")
    return "\n\n".join(sections) + "\n"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|",
    ]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return "\n".join(lines)


def _machine_table(machine: dict[str, Any], load_after: Sequence[float] | None) -> str:
    load = " / ".join(f"{value:.2f}" for value in machine["loadAverage"])
    if load_after:
        load += " (after: " + " / ".join(f"{value:.2f}" for value in load_after) + ")"
    rows = [
        ("date (UTC)", machine["date"]),
        ("CPU", f"{machine['cores']} cores, {machine['cpuModel']}"),
        ("memory", f"{machine['memoryGiB']} GiB"),
        ("load average 1/5/15 min at start", load),
        ("OS", machine["os"]),
        ("Python", machine["python"]),
        ("Java", machine["java"]),
        ("Flink", machine["flink"]),
        ("flink-task", machine["flinkTask"]),
    ]
    lines = ["| machine | |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)]
    return "\n".join(lines)


def _seconds(value: float) -> str:
    return f"{value:.2f}"


def _ratio(value: float) -> str:
    # A step whose direct form is one REST read has a ratio in the hundreds that only
    # restates the task's fixed cost, so it is capped.
    return f"{value:.1f}x" if value < MAX_SHOWN_RATIO else f">{MAX_SHOWN_RATIO:.0f}x"


def _lifecycle_row(name: str, entry: dict[str, Any]) -> tuple[str, ...]:
    task, direct = entry["taskMedian"], entry["directMedian"]
    difference = _seconds(task - direct)
    return (name, _seconds(task), _seconds(direct), difference, _ratio(entry["ratio"]))


def _lifecycle_table(result: dict[str, Any]) -> str:
    rows = [_lifecycle_row(step["action"], step) for step in result["steps"]]
    rows.append(_lifecycle_row("**whole lifecycle**", result["total"]))
    title = f"Lifecycle overhead, median of {result['runs']} run(s), seconds of wall time:"
    header = ("step", "task → emulator → Flink", "direct REST", "difference", "ratio")
    return title + "\n\n" + _table(header, rows)


def _notice_table(result: dict[str, Any]) -> str:
    rows = []
    for action, entry in result["actions"].items():
        delay, poll_wait = entry["delay"], entry["pollWait"]
        rows.append(
            (
                action,
                str(entry["runs"]),
                _seconds(delay["median"]),
                _seconds(delay["p90"]),
                _seconds(delay["max"]),
                _seconds(poll_wait["median"]),
                _seconds(entry["startToSubmit"]["median"]),
                _seconds(entry["wall"]["median"]),
            )
        )
    header = (
        "action",
        "runs",
        "median",
        "p90",
        "max",
        "until the first poll after it, median",
        "process start to runJob response, median",
        "whole step, median",
    )
    title = "Notice delay, seconds from the engine recording the result to the task's exit:"
    return title + "\n\n" + _table(header, rows)


def _cold_start_table(result: dict[str, Any]) -> str:
    rows = [
        (
            entry["command"],
            str(entry["runs"]),
            _seconds(entry["wall"]["median"]),
            _seconds(entry["wall"]["min"]),
            _seconds(entry["wall"]["max"]),
        )
        for entry in result["commands"]
    ]
    title = "Cold start, seconds of wall time per process:"
    return title + "\n\n" + _table(("command", "runs", "median", "min", "max"), rows)


def _memory_table(result: dict[str, Any]) -> str:
    rows = [
        (entry["process"], str(entry["runs"]), f"{entry['maxRssBytes'] / MIB:.1f}")
        for entry in result["processes"]
    ]
    title = "Peak memory of the task process (maximum resident set size over the runs):"
    return title + "\n\n" + _table(("task process", "runs", "max RSS (MiB)"), rows)
