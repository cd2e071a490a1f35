"""Selection of the API version of a request from its `api-version` query parameter."""

from __future__ import annotations

from flink_task.apiversions import API_FEATURES, ApiFeatures
from flink_task.emulator.errors import ApiError


def resolve_api_version(query: dict[str, list[str]]) -> ApiFeatures:
    """Return the version named by the `api-version` query parameter.

    Raises ApiError 400 when the parameter is missing, repeated or not a published version,
    with the same codes that Azure Resource Manager uses.
    """
    values = query.get("api-version", [])
    supported = ", ".join(API_FEATURES)
    if not values or not values[0]:
        raise ApiError(
            400,
            "MissingApiVersionParameter",
            f"The api-version query parameter (?api-version=) is required for all requests. "
            f"Supported versions: {supported}.",
        )
    if len(values) > 1:
        raise ApiError(
            400,
            "InvalidApiVersionParameter",
            "The api-version query parameter is given more than once. Send it once.",
        )
    version = API_FEATURES.get(values[0])
    if version is None:
        raise ApiError(
            400,
            "InvalidApiVersionParameter",
            f"The api-version '{values[0]}' is invalid. Supported versions: {supported}.",
        )
    return version
