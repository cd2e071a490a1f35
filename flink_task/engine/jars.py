"""Resolution of ``jobJarDirectory`` + ``jarName`` to a local jar file."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlsplit


class JarError(Exception):
    """A jar location that is invalid, unmapped or missing."""


class JarResolver:
    """Finds job jars in local folders, ``file://`` URLs and mapped remote URL prefixes.

    ``mappings`` maps a URL prefix (for example
    ``abfs://container@account.dfs.core.windows.net/``) to a local folder that contains the same
    files, so the rest of the URL is a path below that folder. The longest matching prefix wins.
    """

    def __init__(self, mappings: Mapping[str, Path] | None = None) -> None:
        self.mappings = {
            _normalise_prefix(prefix): Path(folder) for prefix, folder in (mappings or {}).items()
        }

    def resolve(self, jar_directory: str, jar_name: str) -> Path:
        """Return the local path of ``jar_name`` in ``jar_directory``.

        Raises JarError for an invalid name, an unmapped URL scheme or a missing file.
        """
        _check_jar_name(jar_name)
        folder = self._local_folder(jar_directory)
        path = folder / jar_name
        if not path.is_file():
            raise JarError(
                f"jar {jar_name} not found in {jar_directory} (looked for {path}); "
                "check jobJarDirectory and jarName"
            )
        return path

    def _local_folder(self, jar_directory: str) -> Path:
        directory = (jar_directory or "").strip()
        if not directory:
            raise JarError(
                "jobJarDirectory is missing; give the folder or URL that contains the jar"
            )
        parts = urlsplit(directory)
        if not parts.scheme or len(parts.scheme) == 1:  # a plain path, or a Windows drive
            return Path(directory)
        if parts.scheme == "file":
            if parts.netloc not in ("", "localhost"):
                raise JarError(f"file URL {directory} names host {parts.netloc}; use file:///path")
            return Path(unquote(parts.path))
        return self._mapped_folder(directory)

    def _mapped_folder(self, directory: str) -> Path:
        normalised = _normalise_prefix(directory)
        matches = [prefix for prefix in self.mappings if normalised.startswith(prefix)]
        if not matches:
            scheme = urlsplit(directory).scheme
            known = ", ".join(sorted(self.mappings)) or "none"
            raise JarError(
                f"jobJarDirectory {directory} uses {scheme}://, which has no local mapping "
                f"(mapped prefixes: {known}); map its prefix to a folder or use a local path"
            )
        prefix = max(matches, key=len)
        rest = unquote(normalised[len(prefix) :]).strip("/")
        folder = self.mappings[prefix]
        target = (folder / rest).resolve() if rest else folder.resolve()
        if not target.is_relative_to(folder.resolve()):
            raise JarError(f"jobJarDirectory {directory} leaves the folder mapped to {prefix}")
        return target


def _check_jar_name(jar_name: str) -> None:
    name = jar_name or ""
    if not name.strip():
        raise JarError("jarName is empty; give the file name of the jar")
    if "/" in name or "\\" in name or name in (".", ".."):
        raise JarError(
            f"jarName {name!r} must be a file name without path separators; "
            "put the folder in jobJarDirectory"
        )


def _normalise_prefix(url: str) -> str:
    return url.rstrip("/") + "/"
