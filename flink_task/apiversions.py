"""Feature sets of the job API versions.

The versions differ by feature set, not by date: 2023-06-01-preview and its unreleased
copy 2024-04-01-preview know nine actions and have neither ``runId`` nor ``$filter``;
the later three add LAST_STATE_UPDATE, RE_LAUNCH, ``runId`` and ``$filter`` on ``jobs``.
"""

from __future__ import annotations

from dataclasses import dataclass

BASE_ACTIONS = (
    "NEW",
    "UPDATE",
    "STATELESS_UPDATE",
    "STOP",
    "START",
    "CANCEL",
    "SAVEPOINT",
    "LIST_SAVEPOINT",
    "DELETE",
)
NEWER_ACTIONS = ("LAST_STATE_UPDATE", "RE_LAUNCH")


@dataclass(frozen=True)
class ApiFeatures:
    """Feature set of one version of the job API."""

    version: str
    actions: tuple[str, ...]
    has_run_id: bool
    has_filter: bool


_NINE_ACTION_VERSIONS = ("2023-06-01-preview", "2024-04-01-preview")
_ELEVEN_ACTION_VERSIONS = ("2023-11-01-preview", "2024-05-01-preview", "2024-05-01")

API_FEATURES: dict[str, ApiFeatures] = {
    **{v: ApiFeatures(v, BASE_ACTIONS, False, False) for v in _NINE_ACTION_VERSIONS},
    **{
        v: ApiFeatures(v, BASE_ACTIONS + NEWER_ACTIONS, True, True)
        for v in _ELEVEN_ACTION_VERSIONS
    },
}


def features(api_version: str) -> ApiFeatures:
    """Return the feature set of a published API version (KeyError for others)."""
    return API_FEATURES[api_version]


def versions_with_newer_actions() -> list[str]:
    return list(_ELEVEN_ACTION_VERSIONS)
