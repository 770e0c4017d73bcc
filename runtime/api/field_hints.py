"""The field a caller meant when they sent one this API does not know (``image`` for ``img``).

Names other image APIs use are data (``GUESSED_NAMES``); anything else gets the closest known name,
as settings and flags do.
"""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from runtime.errors import BadRequest, validation_error

GUESSED_NAMES = {
    **dict.fromkeys(("image", "file", "b64", "base64", "image_base64", "imageBase64", "photo", "picture"), "img"),
    **dict.fromkeys(("image_url", "imageUrl", "img_url", "uri", "link", "src", "href"), "url"),
    **dict.fromkeys(("prompt", "query", "caption", "q"), "text"),
}
NUMBERED = re.compile(r"^(?P<base>.+?)_?(?P<number>[12])$")


def unknown_field_hint(name: str, known: list[str], takes: str = "this body takes") -> str:
    """``did you mean 'img'?``, or the names known when none is close."""
    meant = _meant(name, known)
    if meant is not None:
        return f"did you mean '{meant}'?"
    return f"{takes} {', '.join(known)}" if known else f"{takes} none"


def _meant(name: str, known: list[str]) -> str | None:
    guess = GUESSED_NAMES.get(name) or GUESSED_NAMES.get(name.lower())
    numbered = NUMBERED.match(name)
    if guess is None and numbered and numbered["base"] in GUESSED_NAMES:  # image_1 -> img_1
        guess = f"{GUESSED_NAMES[numbered['base']]}_{numbered['number']}"
    if guess in known:
        return guess
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return close[0] if close else None


IMAGE_BODY_HINT = (
    "; send a JSON object (Content-Type: application/json), or the image itself with its type (image/jpeg)"
)


def request_error(errors: Sequence[Mapping[str, Any]], model: type[BaseModel] | None) -> BadRequest:
    """pydantic's errors on a body of ``model`` as the 400 to answer, with what the caller may have meant:
    the field closest to an unknown one, and, where a body that is not JSON could have been an image, how
    to send one."""
    hint = None if model is None else (lambda at: unknown_field_hint(at[-1], fields_at(model, at[:-1])))
    error = validation_error(errors, hint)
    if error.code == "invalid_json" and model is not None and "img" in model.model_fields:
        error = BadRequest(error.message + IMAGE_BODY_HINT, code=error.code)
    return error


def fields_at(model: type[BaseModel], path: list[str]) -> list[str]:
    """The field names of the object at ``path`` (``["inputs", "3"]``) inside a body of ``model``."""
    current: type[BaseModel] | None = model
    for part in path:
        if current is None:
            return []
        if part.isdigit():  # a list index: the list's item model is already ``current``
            continue
        field = current.model_fields.get(part)
        current = _model_in(field.annotation) if field is not None else None
    return list(current.model_fields) if current is not None else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The first pydantic model inside an annotation (``list[Slot] | None`` -> ``Slot``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in typing.get_args(annotation):
        found = _model_in(argument)
        if found is not None:
            return found
    return None
