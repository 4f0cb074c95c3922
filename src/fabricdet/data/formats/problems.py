"""Validation problems found while reading a dataset, and the strict/lenient policy.

Readers never raise at the first bad record: they note each problem in a :class:`ProblemLog`
and go on, so that one run shows the user everything that is wrong. At the end, a strict log
raises one :class:`InvalidDataError` listing the first problems and the total; a lenient log
returns a :class:`LoadReport` naming every record it skipped.

Problems that leave nothing to read (a missing or malformed annotation file) are fatal in both
modes: the reader raises :class:`InvalidDataError` at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fabricdet.errors import DataError

#: how many problems an error message or a report lists before it only gives the count.
MAX_LISTED = 20

LENIENT_HINT = "or load with --lenient (strict=False) to skip the bad records"


@dataclass(frozen=True)
class Problem:
    """One bad record (or file).

    Attributes:
        kind: short code, e.g. ``"missing-image"``, ``"unknown-name"``, ``"box-outside"``,
            ``"bad-box"``, ``"non-finite"``, ``"unreadable-image"``, ``"duplicate"``,
            ``"unknown-category"``, ``"malformed-json"``, ``"malformed-record"``.
        file: the file holding the bad record (or the bad file itself).
        record: which record, e.g. ``'record [12] name="a.jpg"'``; empty for a whole file.
        message: what is wrong.
        fix: what the user can do about it.
    """

    kind: str
    file: Path
    record: str
    message: str
    fix: str

    def __str__(self) -> str:
        where = f"{self.file}, {self.record}" if self.record else f"{self.file}"
        return f"{where}: {self.message}. Fix: {self.fix}"


class RecordError(Exception):
    """Raised by per-record checks; the reader adds file and record and logs a :class:`Problem`.

    Internal to the readers: users only ever see :class:`InvalidDataError` or a report.
    """

    def __init__(self, kind: str, message: str, fix: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.fix = fix

    def at(self, file: Path, record: str) -> Problem:
        return Problem(self.kind, file, record, self.message, self.fix)


def format_problems(problems: list[Problem] | tuple[Problem, ...], limit: int = MAX_LISTED) -> str:
    """Numbered list of the first ``limit`` problems plus the count of the others."""
    lines = [f"  {i + 1}. {p}" for i, p in enumerate(problems[:limit])]
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more")
    return "\n".join(lines)


class InvalidDataError(DataError):
    """A dataset or prediction file failed validation; ``problems`` holds every problem found."""

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        n = len(self.problems)
        if n == 1:
            text = str(self.problems[0])
        else:
            text = f"{n} problems found:\n{format_problems(self.problems)}"
        super().__init__(text)


def fatal(kind: str, file: Path, message: str, fix: str, record: str = "") -> InvalidDataError:
    """The error for a problem that leaves nothing to read (raise it)."""
    return InvalidDataError([Problem(kind, file, record, message, fix)])


@dataclass
class LoadReport:
    """What a lenient read skipped, and what looked suspicious but was kept.

    Attributes:
        skipped: problems whose record (or image) was left out of the dataset.
        warnings: oddities kept as they are (e.g. a defect image with no annotation).
    """

    skipped: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.skipped and not self.warnings

    def format(self, limit: int = MAX_LISTED) -> str:
        """Human-readable summary, empty when there is nothing to say."""
        parts = []
        if self.skipped:
            parts.append(f"skipped {len(self.skipped)} bad record(s):")
            parts.append(format_problems(self.skipped, limit))
        if self.warnings:
            parts.append(f"{len(self.warnings)} warning(s):")
            parts.append(format_problems(self.warnings, limit))
        return "\n".join(parts)


class ProblemLog:
    """Collects problems during one read and applies the strict/lenient policy at the end."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.report = LoadReport()

    def skip(self, problem: Problem) -> None:
        """Note a bad record; the caller leaves it out."""
        self.report.skipped.append(problem)

    def warn(self, problem: Problem) -> None:
        """Note something suspicious that is kept."""
        self.report.warnings.append(problem)

    def finish(self) -> LoadReport:
        """Raise everything found when strict; otherwise return the report."""
        if self.strict and self.report.skipped:
            raise InvalidDataError(self.report.skipped)
        return self.report
