"""The `$filter` and paging rules of `GET .../jobs`."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flink_task.apiversions import ApiFeatures
from flink_task.emulator.bodies import JOB_NAME_PATTERN
from flink_task.emulator.errors import ApiError

# `<property> eq '<value>'`, where a quote inside the value is doubled (OData string literal).
_FILTER_PATTERN = re.compile(r"^\s*(jobName|jarName)\s+eq\s+'((?:[^']|'')*)'\s*$")

SKIP_TOKEN_PARAMETER = "$skiptoken"  # noqa: S105 (a query parameter name)


@dataclass(frozen=True)
class JobFilter:
    """A parsed `$filter`: the record property and the value it must equal."""

    property_name: str
    value: str

    def matches(self, properties: dict[str, Any]) -> bool:
        return properties.get(self.property_name) == self.value


def parse_filter(query: dict[str, list[str]], version: ApiFeatures) -> JobFilter | None:
    """Return the `$filter` of a jobs request, or None when there is none.

    Raises ApiError 400 when the version has no `$filter` or the expression is not one of
    `jobName eq '<name>'` and `jarName eq '<name>'`.
    """
    values = query.get("$filter")
    if values is None:
        return None
    if not version.has_filter:
        raise ApiError(
            400,
            "InvalidQueryParameter",
            f"api-version {version.version} has no $filter on jobs. Use api-version "
            "2023-11-01-preview or later, or list without $filter.",
            target="$filter",
        )
    match = _FILTER_PATTERN.fullmatch(values[0]) if len(values) == 1 else None
    if match is None:
        raise ApiError(
            400,
            "InvalidQueryParameter",
            f"Invalid $filter {values!r}. Supported forms: jobName eq '<name>' and "
            "jarName eq '<name>', with a ' inside the value doubled.",
            target="$filter",
        )
    return JobFilter(match.group(1), match.group(2).replace("''", "'"))


def parse_skip_token(query: dict[str, list[str]]) -> str | None:
    """Return the job name after which the requested page starts, or None for page one."""
    values = query.get(SKIP_TOKEN_PARAMETER)
    if values is None:
        return None
    if len(values) != 1 or not JOB_NAME_PATTERN.fullmatch(values[0]):
        raise ApiError(
            400,
            "InvalidQueryParameter",
            f"Invalid {SKIP_TOKEN_PARAMETER} {values!r}. Follow the nextLink of the previous "
            "page unchanged.",
            target=SKIP_TOKEN_PARAMETER,
        )
    return values[0]


def select_page(
    records: Sequence[dict[str, Any]], after: str | None, page_size: int
) -> tuple[list[dict[str, Any]], str | None]:
    """Return one page of `records` (sorted by jobName) and the skip token of the next page.

    The skip token is the last job name on the page, so a job added or deleted between two
    requests neither repeats nor hides another job. The token is None on the last page.
    """
    ordered = sorted(records, key=lambda record: record["jobName"])
    if after is not None:
        ordered = [record for record in ordered if record["jobName"] > after]
    page = ordered[:page_size]
    if len(ordered) > page_size:
        return page, page[-1]["jobName"]
    return page, None
