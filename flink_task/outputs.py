"""The outputs of a run and the job listing, the same for both targets."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TextIO

from flink_task.redact import redact_properties
from flink_task.report import ConsoleReporter, Reporter

# Outputs of every run, in the order they are written.
OUTPUT_NAMES = (
    "jobId",
    "status",
    "actionResult",
    "jobOutput",
    "lastSavePoint",
    "savepoints",
    "job",
    "jobs",
)


class ActionRequest(Protocol):
    """Part of a run's request that the outputs use, whatever the target."""

    @property
    def action(self) -> str: ...

    @property
    def job_name(self) -> str | None: ...


def outputs_for(request: ActionRequest, record: Mapping[str, Any]) -> dict[str, str]:
    """Return the output values of a job record, with secret-looking values redacted."""
    record = redact_properties(record)
    outputs = {
        "jobId": str(record.get("jobId") or ""),
        "status": str(record.get("status") or ""),
        "actionResult": str(record.get("actionResult") or ""),
        "jobOutput": str(record.get("jobOutput") or ""),
        "lastSavePoint": str(record.get("lastSavePoint") or ""),
        "job": json.dumps(record, sort_keys=True),
    }
    if request.action == "LIST_SAVEPOINT" and record.get("actionResult") == "SUCCESS":
        lines = str(record.get("jobOutput") or "").splitlines()
        outputs["savepoints"] = json.dumps([line.strip() for line in lines if line.strip()])
    return outputs


def write_outputs(request: ActionRequest, record: Mapping[str, Any], reporter: Reporter) -> None:
    """Write a record as outputs, a summary and the printed result."""
    outputs = outputs_for(request, record)
    reporter.set_outputs(outputs)
    rows = [(name, outputs[name]) for name in OUTPUT_NAMES if name in outputs and name != "job"]
    reporter.summary(
        f"flink-task {request.action} of job {request.job_name}",
        [(name, value) for name, value in rows if name != "jobOutput"],
        outputs.get("jobOutput") or None,
    )
    reporter.print_result(json.loads(outputs["job"]))


def short_state(record: Mapping[str, Any]) -> str:
    return (
        f"status {record.get('status') or 'unknown'}, "
        f"last action {record.get('action') or 'unknown'}"
    )


def report_jobs(
    request: ActionRequest,
    records: list[dict[str, Any]],
    reporter: Reporter,
    *,
    title: str,
    describe: Callable[[Mapping[str, Any]], str],
    columns: Sequence[str],
    as_table: bool,
) -> None:
    """Write a job listing: the ``jobs`` output, a summary, and a table or JSON.

    ``records`` are redacted already. With a job name, the single job's outputs are written
    too. ``as_table`` prints a table on the console instead of JSON.
    """
    outputs = {"jobs": json.dumps(records, sort_keys=True)}
    if request.job_name is not None and records:
        outputs.update(outputs_for(request, records[0]))
    reporter.set_outputs(outputs)
    reporter.summary(title, [(str(r.get("jobName")), describe(r)) for r in records], None)
    if as_table and isinstance(reporter, ConsoleReporter):
        print_table(records, reporter, columns, sys.stdout)
    else:
        reporter.print_result({"jobs": records})


def print_table(
    records: list[dict[str, Any]], reporter: Reporter, columns: Sequence[str], stream: TextIO
) -> None:
    rows = [[_cell(reporter, record.get(column)) for column in columns] for record in records]
    widths = [len(column) for column in columns]
    for row in rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = [cell.ljust(width) for cell, width in zip(cells, widths, strict=True)]
        return "  ".join(padded).rstrip() + "\n"

    stream.write(line(columns))
    for row in rows:
        stream.write(line(row))
    if not rows:
        stream.write("(no jobs)\n")


def _cell(reporter: Reporter, value: Any) -> str:
    text = reporter.untrusted(str(value or "-"))
    return " ".join(text.split()) or "-"
