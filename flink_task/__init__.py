"""flink-task: deploy and operate Apache Flink jobs from CI/CD pipelines."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("flink-task")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
