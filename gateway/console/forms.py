"""Console forms as the requests the REST API takes: a form's fields become the JSON body the same management
functions check, so the console refuses what the API refuses, with the same messages."""
from __future__ import annotations

import re
from typing import Any

from werkzeug.datastructures import MultiDict

from gateway.destinations.email import EmailSettings
from gateway.destinations.http import HttpSettings
from gateway.destinations.kinds import FILE_KINDS

# What each create form may send, by the kind it creates; a field left blank is not given.
TEXT_FIELDS: dict[str, tuple[str, ...]] = {
    HttpSettings.kind: ("url", "format", "app"),
    EmailSettings.kind: ("subject",),
    **{kind: ("host", "username", "password", "remote_dir", "period", "file_name") for kind in FILE_KINDS},
}
NUMBER_FIELDS: dict[str, tuple[str, ...]] = {
    HttpSettings.kind: (),
    EmailSettings.kind: ("interval_seconds",),
    **{kind: ("port",) for kind in FILE_KINDS},
}
_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_SEPARATORS = re.compile(r"[\s,;]+")


def _number(text: str) -> int | float | str:
    """A number typed into a form as JSON would carry it; anything else as typed (the checks name it)."""
    if not _NUMBER.fullmatch(text):
        return text
    return float(text) if "." in text else int(text)


def payload(kind: str, form: MultiDict[str, str]) -> dict[str, Any]:
    """The create request a form for ``kind`` describes (as POST /api/v1/webhooks or /destinations take it)."""
    body: dict[str, Any] = {"events": form.getlist("events")}
    if kind != HttpSettings.kind:
        body["kind"] = kind
    for name in TEXT_FIELDS[kind]:
        if form.get(name, "").strip():
            body[name] = form[name].strip()
    for name in NUMBER_FIELDS[kind]:
        if form.get(name, "").strip():
            body[name] = _number(form[name].strip())
    if kind == EmailSettings.kind:
        body["recipients"] = [r for r in _SEPARATORS.split(form.get("recipients", "")) if r]
    return body
