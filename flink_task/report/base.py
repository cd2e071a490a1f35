"""The reporter interface, and what every platform shares: secrets, writing, logging."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TextIO

from flink_task.report.markdown import render_summary
from flink_task.report.redaction import SecretRegistry, secret_lines
from flink_task.report.untrusted import neutralise_commands
from flink_task.report.values import output_value

logger = logging.getLogger(__name__)

# Loggers that get the reporter's handler. Records of other libraries reach the root
# logger, which also gets the handler (at WARNING) so that nothing is printed
# unredacted by Python's last-resort handler.
_PACKAGE_LOGGER = "flink_task"
_AZURE_LOGGER = "azure"


class Reporter:
    """Base of the platform reporters.

    Every line a reporter prints goes through the same steps: registered secrets are
    replaced by ``***``, then text is neutralised so that it cannot act as a pipeline
    command, then (for a command) escaped. Writes are serialised by a lock and
    flushed at once, so a mask command is on the stream before anything printed
    after it.
    """

    platform = "console"

    def __init__(self, *, environ: Mapping[str, str], stdout: TextIO, stderr: TextIO) -> None:
        self.environ = environ
        self.stdout = stdout
        self.stderr = stderr
        self.secrets = SecretRegistry()
        self.failed = False
        self._lock = threading.RLock()
        self._group_depth = 0

    # Secrets

    def mask(self, secret: str) -> None:
        """Register a secret with the platform and redact it from everything printed later.

        A multi-line value is registered line by line. Values shorter than
        ``MIN_SECRET_LENGTH`` characters and blank lines are not registered.
        """
        if not secret:
            return
        for line in secret_lines(secret):
            if self.secrets.add(line):
                self._register_secret(line)

    def _register_secret(self, value: str) -> None:
        """Send one single-line secret to the platform's masker."""

    # Untrusted text

    def untrusted(self, text: str) -> str:
        """Return server text made safe to print: redacted, and no line can be a command."""
        return neutralise_commands(self.secrets.redact(text))

    # Logging

    def install_logging(self, level: int | str) -> None:
        """Send the ``flink_task`` and ``azure`` loggers (and root warnings) to this reporter.

        ``azure`` stays at WARNING unless ``level`` is DEBUG. Both loggers stop
        propagating, so no other handler prints their records unredacted. A handler
        of an earlier reporter is replaced.
        """
        numeric_level = logging.getLevelName(level) if isinstance(level, str) else level
        if not isinstance(numeric_level, int):
            raise ValueError(f"invalid log level {level!r}: use DEBUG, INFO, WARNING or ERROR")
        remove_reporter_handlers()
        handler = ReporterHandler(self)

        package_logger = logging.getLogger(_PACKAGE_LOGGER)
        package_logger.setLevel(numeric_level)
        azure_logger = logging.getLogger(_AZURE_LOGGER)
        azure_logger.setLevel(logging.DEBUG if numeric_level <= logging.DEBUG else logging.WARNING)
        for named_logger in (package_logger, azure_logger):
            named_logger.addHandler(handler)
            named_logger.propagate = False

        root_handler = ReporterHandler(self)
        root_handler.setLevel(logging.WARNING)
        logging.getLogger().addHandler(root_handler)

    def uninstall_logging(self) -> None:
        """Remove the handlers that install_logging added, and let the loggers propagate."""
        remove_reporter_handlers()

    def format_record(self, record: logging.LogRecord, message: str, details: str) -> list[str]:
        """Return the lines that show one log record.

        ``message`` is the record's message and ``details`` its traceback or stack (often
        empty). Both are already redacted and neutralised.
        """
        text = f"{message}\n{details}" if details else message
        return [f"[{record.levelname}] {line}" for line in text.split("\n")]

    def log_stream(self) -> TextIO:
        """Return the stream that log records and messages are written to."""
        return self.stdout

    # Groups

    @contextlib.contextmanager
    def group(self, title: str) -> Iterator[None]:
        """Print the lines written inside the block as one collapsible group.

        Only the outermost group is sent to the platform. A group opened inside it prints
        its title as a plain line.
        """
        safe_title = self._single_line(title)
        with self._lock:
            outermost = self._group_depth == 0
            self._group_depth += 1
            self._write_lines(self.log_stream(), self._start_group(safe_title, outermost))
        try:
            yield
        finally:
            with self._lock:
                self._group_depth -= 1
                self._write_lines(self.log_stream(), self._end_group(outermost))

    def _start_group(self, title: str, outermost: bool) -> list[str]:
        return [f"== {title}"]

    def _end_group(self, outermost: bool) -> list[str]:
        return []

    # Results

    def set_outputs(self, outputs: Mapping[str, Any]) -> None:
        """Publish step outputs. The console has none."""

    def redacted_output(self, name: str, value: Any) -> str:
        """Return an output value as a string with registered secrets replaced by ``***``."""
        text = output_value(value)
        redacted = self.secrets.redact(text)
        if redacted != text:
            logger.warning("Output %s contains a masked value, which is written as ***", name)
        return redacted

    def summary(
        self, title: str, rows: Sequence[tuple[str, str]], details: str | None = None
    ) -> None:
        """Publish a short summary table and, when given, the job output below it."""
        lines = [self.untrusted(title)]
        for name, value in rows:
            lines.append(f"  {self.untrusted(name)}: {self.untrusted(value)}")
        if details:
            lines.append(self.untrusted(details))
        self._write_lines(self.log_stream(), "\n".join(lines).split("\n"))

    def summary_markdown(
        self, title: str, rows: Sequence[tuple[str, str]], details: str | None
    ) -> str:
        """Return the summary as Markdown with registered secrets redacted."""
        redact = self.secrets.redact
        return render_summary(
            redact(title),
            [(redact(name), redact(value)) for name, value in rows],
            redact(details) if details else None,
        )

    def fail(self, message: str) -> None:
        """Report the run as failed with one message."""
        self.failed = True
        self._write_lines(self.log_stream(), [f"error: {line}" for line in self._lines(message)])

    def finish(self, exit_code: int) -> None:
        """Close an open group and flush both streams. Call once, at the very end."""
        self._close_groups()
        self._flush()

    def _close_groups(self) -> None:
        with self._lock:
            if self._group_depth > 0:
                self._group_depth = 0
                self._write_lines(self.log_stream(), self._end_group(True))

    def _flush(self) -> None:
        for stream in (self.stdout, self.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()

    def print_result(self, record: Mapping[str, Any]) -> None:
        """Show the final job record; pipelines print it in a collapsed group."""
        with self.group("Job record"):
            self._write_lines(self.log_stream(), self._lines(self.record_json(record)))

    def record_json(self, record: Mapping[str, Any]) -> str:
        """Return the record as indented JSON with registered secrets redacted."""
        return json.dumps(self.secrets.redact_data(record), indent=2, ensure_ascii=True)

    # Writing

    def _lines(self, text: str) -> list[str]:
        """Return text as lines that are safe to print."""
        return self.untrusted(text).split("\n")

    def _single_line(self, text: str) -> str:
        return " ".join(self._lines(text))

    def _write_lines(self, stream: TextIO, lines: Sequence[str]) -> None:
        """Write finished lines (already redacted, neutralised or escaped) and flush."""
        if not lines:
            return
        text = "".join(f"{line}\n" for line in lines)
        with self._lock:
            try:
                stream.write(text)
            except UnicodeEncodeError:
                encoding = getattr(stream, "encoding", None) or "ascii"
                stream.write(text.encode(encoding, "replace").decode(encoding))
            stream.flush()


class ReporterHandler(logging.Handler):
    """Logging handler that prints records through a reporter."""

    def __init__(self, reporter: Reporter) -> None:
        super().__init__()
        self.reporter = reporter
        self._formatter = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.reporter.untrusted(record.getMessage())
            details = (
                self.reporter.untrusted(self._details(record)) if _has_details(record) else ""
            )
            lines = self.reporter.format_record(record, message, details)
            self.reporter._write_lines(self.reporter.log_stream(), lines)
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - the logging module's contract for emit()
            self.handleError(record)

    def handleError(self, record: logging.LogRecord) -> None:
        """Print one line without the record.

        The default handler prints the record's message and arguments, which are neither
        redacted nor neutralised.
        """
        if not logging.raiseExceptions:
            return
        with contextlib.suppress(Exception):
            self.reporter.stderr.write(
                f"flink-task: failed to print a log record from {record.name} "
                f"(line {record.lineno})\n"
            )

    def _details(self, record: logging.LogRecord) -> str:
        parts = []
        if record.exc_info:
            parts.append(self._formatter.formatException(record.exc_info))
        elif record.exc_text:
            parts.append(record.exc_text)
        if record.stack_info:
            parts.append(self._formatter.formatStack(record.stack_info))
        return "\n".join(parts)


def _has_details(record: logging.LogRecord) -> bool:
    return bool(record.exc_info or record.exc_text or record.stack_info)


def remove_reporter_handlers() -> None:
    """Remove every ReporterHandler from the loggers install_logging configures."""
    for name in (_PACKAGE_LOGGER, _AZURE_LOGGER, None):
        named_logger = logging.getLogger(name)
        for handler in list(named_logger.handlers):
            if isinstance(handler, ReporterHandler):
                named_logger.removeHandler(handler)
                handler.close()
        if name is not None:
            named_logger.propagate = True
