"""The names of a file destination's files: templates such as ``{account}_{type}_{start:%Y%m%d%H%M}.{ext}``,
their checks, and how a period's name is made from one.

Fields: ``account`` (the account's name), ``destination`` (its id), ``type`` (the event types
routed to it, lower case, joined by ``-``), ``start`` and ``end`` (the period's bounds in UTC,
formatted with strftime codes), ``sequence`` (the period's number among the destination's
periods that start on the same UTC day, from 1) and ``ext`` (the extension: ``log``, ``csv``
or ``jsonl`` by line format, then ``.gz`` or ``.zip``, then ``.gpg``). A template without
``{ext}`` has the compression and encryption suffixes appended, as names always had.
"""
from __future__ import annotations

import re
import string
from dataclasses import dataclass
from datetime import datetime, timedelta

from gateway.destinations.checks import problem

FIELDS = ("account", "destination", "type", "start", "end", "sequence", "ext")
MAX_NAME = 255
# The extension a file's lines give it.
LINE_EXTENSIONS = {"form": "log", "csv": "csv", "jsonl": "jsonl"}
_STRFTIME_RUN = re.compile(r"(?:%[A-Za-z])+")
_FORMATTER = string.Formatter()


@dataclass(frozen=True)
class NameFields:
    """What a template's fields are filled from, apart from the period and the extension."""

    account: str = "account"
    destination: int = 0
    type: str = "events"
    sequence: int = 1


def from_strftime(pattern: str) -> str:
    """A template from a plain strftime pattern (as file names were given before templates):
    ``events-%Y%m%d.log`` gives ``events-{start:%Y%m%d}.log``."""
    escaped = pattern.replace("%%", "\0").replace("{", "{{").replace("}", "}}")
    return _STRFTIME_RUN.sub(lambda m: "{start:" + m.group(0) + "}", escaped).replace("\0", "%")


def normalized(template: str) -> str:
    """The template as stored: a plain strftime pattern (no ``{``, some ``%``) converted, anything else as given."""
    return from_strftime(template) if "{" not in template and "%" in template else template


def fields_of(template: str) -> list[str]:
    """The fields a template uses; ValidationError (``file_name``) for an unknown field or a malformed template."""
    try:
        parts = list(_FORMATTER.parse(template))
    except ValueError as exc:
        raise problem("file_name", f"{template!r} is not a valid template: {exc}") from None
    used: list[str] = []
    for _, field, _, conversion in parts:
        if field is None:
            continue
        if field not in FIELDS or conversion:
            raise problem("file_name", f"{{{field}}} is not a field of file names (they have "
                                       f"{', '.join('{' + f + '}' for f in FIELDS)})")
        used.append(field)
    return used


def render(template: str, start: datetime, end: datetime, fields: NameFields, ext: str) -> str:
    """The template filled in; ValueError when a format code does not fit its field."""
    return template.format(account=fields.account, destination=fields.destination, type=fields.type,
                           start=start, end=end, sequence=fields.sequence, ext=ext)


def _tells_apart(template: str, start: datetime, fields: NameFields, ext: str, step: timedelta) -> bool:
    """Whether the template gives a different name to a period starting ``step`` later (same other fields)."""
    return render(template, start, start, fields, ext) != render(template, start + step, start + step, fields, ext)


def with_start_time(name: str, start: datetime) -> str:
    """``name`` with the start's time of day (``-HHMM``, or ``-HHMMSS``) before its first dot: how a period
    that does not start on the plan's boundary is told apart from the regular one of its day."""
    stamp = start.strftime("-%H%M%S" if start.second else "-%H%M")
    stem, dot, rest = name.partition(".")
    return f"{stem}{stamp}{dot}{rest}"


def period_name(template: str, start: datetime, end: datetime, fields: NameFields, extension: str,
                suffixes: str, regular: bool) -> str:
    """The name of the period [start, end): the template filled in (the suffixes appended when it has no
    ``{ext}``); a period that is not a regular one also gets its start time, unless the template already
    tells such periods apart (by the minute, the second, or the sequence)."""
    template_ext = "{ext}" in template or "{ext:" in template
    ext = extension + suffixes
    name = render(template, start, end, fields, ext)
    if not regular and "sequence" not in fields_of(template):
        step = timedelta(seconds=1) if start.second else timedelta(minutes=1)
        if not _tells_apart(template, start, fields, ext, step):
            name = with_start_time(name, start)
    return name if template_ext else name + suffixes


def check_plain(name: str, template: str) -> None:
    """ValidationError (``file_name``) unless ``name`` (made from ``template``) is a plain file name."""
    if not name or len(name) > MAX_NAME or "/" in name or "\\" in name or name.startswith(".") or "\0" in name:
        raise problem("file_name", f"{template!r} must give a plain file name of at most {MAX_NAME} characters "
                                   "(no '/', no leading '.')")
