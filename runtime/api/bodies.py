"""Reading a request body by its Content-Type: JSON, raw image bytes, or multipart/form-data.

- ``image/*`` or ``application/octet-stream``: the body is the image, as if sent in ``img``.
- ``multipart/form-data``: file parts fill the image slots (``img``, ``img_1``, ``img_2``), text
  parts the other fields (``metadata``, ``filter``, ``inputs`` as JSON strings).
- ``text/plain``: refused (415). It is what a web page of any site may POST without a preflight,
  so reading it as JSON would let such a page drive the API on a developer's machine.
- Anything else (no Content-Type, the form type ``curl -d`` sends) is read as JSON, so clients that
  never set the header, like the AI Solution Kit's examples, work unchanged.

``BodyRoute`` applies this to every route of a router: an upload becomes the same request model a
JSON body gives, with the image slots holding the raw bytes (never base64), so one validation and
one decoder serve every kind of body.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Callable, Coroutine
from email.message import Message
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from starlette.datastructures import Headers, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope

from runtime.api.field_hints import unknown_field_hint
from runtime.api.json_limits import json_values_bound, surrogate_refusal
from runtime.contract import BINARY_MEDIA_TYPES, JSON_MEDIA_TYPE, MULTIPART_MEDIA_TYPE, matches_media_type
from runtime.errors import ApiError, BadRequest, InvalidInput
from runtime.inputs.images import looks_like_image
from runtime.libraries.values import LONE_SURROGATE, writable_as_utf8
from runtime.settings import Settings

JSON, BINARY, MULTIPART, TEXT = "json", "binary", "multipart", "text"
TEXT_MEDIA_TYPE = "text/plain"
IMAGE_SLOTS = ("img", "img_1", "img_2")
BINARY_SLOT = "img"
# The media types read as something other than JSON are runtime.contract.UPLOAD_MEDIA_TYPES: the
# REST API declares them as binary media types, so API Gateway passes their bodies byte for byte.


def body_kind(content_type: str | None) -> str:
    """``binary``, ``multipart``, ``text`` (refused) or ``json`` (every other type, or none, is read as JSON)."""
    if not content_type:
        return JSON
    message = Message()
    message["content-type"] = content_type
    media_type = message.get_content_type()  # lower case, parameters dropped; "text/plain" when unparsable
    if any(matches_media_type(media_type, binary) for binary in BINARY_MEDIA_TYPES):
        return BINARY
    if media_type == MULTIPART_MEDIA_TYPE:
        return MULTIPART
    if media_type == TEXT_MEDIA_TYPE and "text/plain" in content_type.lower():  # not the fallback of a bad header
        return TEXT
    return JSON


def content_type_of(scope: Scope) -> str | None:
    return Headers(scope=scope).get("content-type")


class BodyRoute(APIRoute):
    """A route whose body model may also arrive as raw image bytes or as a multipart form.

    The OpenAPI document lists those bodies after the JSON one (Swagger UI then offers a file upload).
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        model = body_model(endpoint)
        content = upload_content(model) if model is not None else {}
        if content:  # FastAPI merges openapi_extra into the generated operation
            extra = dict(self.openapi_extra or {})
            extra["requestBody"] = {**extra.get("requestBody", {}), "content": content}
            self.openapi_extra = extra

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        model = body_model(self.endpoint)

        async def read_by_content_type(request: Request) -> Response:
            kind = body_kind(content_type_of(request.scope))
            if model is not None and kind in (JSON, TEXT) and BINARY_SLOT in model.model_fields:
                kind = BINARY if looks_like_image(await request.body()) else kind  # curl --data-binary @a.jpg
            if model is not None and kind == JSON:
                refuse_query_fields(request, model)
            if model is not None and kind == TEXT:
                raise text_refused()
            if model is not None and kind != JSON:
                fields = await upload_fields(request, kind, model)
                # FastAPI validates what request.json() returns; handing it the fields (bytes in the
                # image slots) gives uploads the same validation and errors as JSON bodies.
                request._json = fields  # Starlette's cache of the parsed body
            if model is not None:
                as_json(request)
            return await handler(request)

        return read_by_content_type


def as_json(request: Request) -> None:
    """Make FastAPI parse the body as JSON whatever its declared type."""
    headers = [(name, value) for name, value in request.scope["headers"] if name != b"content-type"]
    request.scope["headers"] = [*headers, (b"content-type", JSON_MEDIA_TYPE.encode())]
    request.__dict__.pop("_headers", None)  # Starlette caches the headers it has read


def body_model(endpoint: Callable[..., Any]) -> type[BaseModel] | None:
    """The request model of an endpoint's ``body`` parameter, if it has one."""
    hint = typing.get_type_hints(endpoint, include_extras=True).get("body")
    if typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    return hint if isinstance(hint, type) and issubclass(hint, BaseModel) else None


async def upload_fields(request: Request, kind: str, model: type[BaseModel]) -> dict[str, Any]:
    """The request model's fields from a binary or multipart body."""
    names = list(model.model_fields)
    settings = request.app.state.settings
    if kind == BINARY:
        if BINARY_SLOT not in names:
            raise unsupported(names)
        data = await request.body()
        if not data:
            raise InvalidInput("request body: the image is empty (0 bytes)", code="not_an_image")
        return {**query_fields(request, model, settings), BINARY_SLOT: data}
    if not any(slot in names for slot in IMAGE_SLOTS):
        raise unsupported(names)
    await request.body()  # kept, so FastAPI finds a body to validate
    try:
        form = await request.form(
            max_files=len(IMAGE_SLOTS), max_fields=len(names), max_part_size=settings.max_request_bytes
        )
    except StarletteHTTPException as exc:  # Starlette's message says which limit or what is malformed
        raise BadRequest(f"multipart body: {exc.detail}", code="invalid_multipart") from exc
    fields: dict[str, Any] = {}
    try:
        for name, value in form.multi_items():
            check_part_text(name, value)
            part = f"part '{name}'"
            if is_blank(value):
                continue  # an HTML form sends every field, the ones left empty too
            if name not in names:
                raise BadRequest(f"{part}: unknown part; {unknown_field_hint(name, names)}", code="unknown_field")
            if name in fields:
                raise BadRequest(f"{part}: given twice; send one value per part", code="duplicate_part")
            fields[name] = await part_value(name, value, model, settings)
    finally:
        await form.close()  # large parts are spooled to temporary files
    for name, value in query_fields(request, model, settings).items():
        if name in fields:
            raise BadRequest(f"query parameter '{name}': given as a part too; send it once", code="duplicate_part")
        fields[name] = value
    return fields


def refuse_query_fields(request: Request, model: type[BaseModel]) -> None:
    """With a JSON body, the body's fields go in it: one given in the query would be ignored."""
    for name in request.query_params:
        if name in model.model_fields:
            message = f"query parameter '{name}': with a JSON body, give {name} in the body"
            raise BadRequest(message, code="unknown_field")


def query_fields(request: Request, model: type[BaseModel], settings: Settings) -> dict[str, Any]:
    """The body model's fields given as query parameters (``?id=sku-1&metadata={...}``): an image or a form
    body carries the add's options there, typed as a form's text is. Other query parameters are the
    route's own (FastAPI reads them); unknown ones are refused app-wide (``runtime.api.query_check``)."""
    fields: dict[str, Any] = {}
    for name, text in request.query_params.multi_items():
        if name not in model.model_fields or name in IMAGE_SLOTS:
            continue
        where = f"query parameter '{name}'"
        if name in fields:
            raise BadRequest(f"{where}: given twice; send one value", code="duplicate_part")
        annotation = model.model_fields[name].annotation
        fields[name] = (
            json_part(name, text, settings.max_json_values, where)
            if wants_json(annotation)
            else (form_scalar(text, annotation))
        )
    return fields


def check_part_text(name: str, value: UploadFile | str) -> None:
    """A part's name and text decoded by the form's ``charset`` (UTF-7 decodes ``+2AA-`` to a lone
    surrogate): refused like a JSON body's, before anything echoes them."""
    if not writable_as_utf8(name):
        raise BadRequest(f"multipart body: a part's name {LONE_SURROGATE}", code="invalid_value")
    refusal = surrogate_refusal(value, name) if isinstance(value, str) else None
    if refusal is not None:
        raise refusal


def is_blank(value: UploadFile | str) -> bool:
    """An empty text field, or a file input with no file chosen (no file name, no bytes)."""
    if isinstance(value, UploadFile):
        return not value.filename and not value.size
    return value == ""


async def part_value(name: str, value: UploadFile | str, model: type[BaseModel], settings: Settings) -> Any:
    part = f"part '{name}'"
    if isinstance(value, UploadFile):
        if name not in IMAGE_SLOTS:
            raise BadRequest(f"{part}: a file is only accepted in {', '.join(IMAGE_SLOTS)}", code="invalid_part")
        if value.size is not None and value.size > settings.max_image_bytes:
            message = f"{part}: the image is larger than {settings.max_image_bytes} bytes"
            raise InvalidInput(message, code="image_too_large")
        try:
            return await value.read()
        finally:
            await value.close()  # a large part is spooled to a temporary file
    annotation = model.model_fields[name].annotation
    if wants_json(annotation):
        return json_part(name, value, settings.max_json_values)
    return form_scalar(value, annotation)


def form_scalar(text: str, annotation: Any) -> Any:
    """A form's text as the field's JSON type: a form carries only text, so ``top_k=5`` and ``dedup=false``
    are numbers and booleans there (JSON bodies take exactly their types). Text that is not one stays
    text, and the model's validation names the field."""
    kinds = set(typing.get_args(annotation)) or {annotation}
    if bool in kinds and text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        if kind in kinds:
            try:
                return kind(text)
            except ValueError:
                pass
    return text


def wants_json(annotation: Any) -> bool:
    """Whether a field holds an object or a list (sent as a JSON string in a form)."""
    kinds = typing.get_args(annotation) or (annotation,)
    return any(typing.get_origin(kind) in (dict, list) or kind in (dict, list) for kind in kinds)


def json_part(name: str, text: str, max_values: int, where: str | None = None) -> Any:
    part = where or f"part '{name}'"
    if json_values_bound(text.encode()) > max_values:
        raise BadRequest(f"{part}: more than {max_values} JSON values", code="json_too_large")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"{part}: not JSON ({exc})", code="invalid_json") from exc
    refusal = surrogate_refusal(value, name)
    if refusal is not None:
        raise refusal
    return value


# --- the OpenAPI document ----------------------------------------------------------------------

FORM_VALUE_KINDS = {int: "an integer", float: "a number", bool: "true or false"}
BINARY_SCHEMA = {"type": "string", "format": "binary"}


def upload_content(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI ``requestBody.content`` entries for the uploads a route's model accepts (may be none)."""
    names = list(model.model_fields)
    content: dict[str, Any] = {}
    if BINARY_SLOT in names:
        binary = {"schema": {**BINARY_SCHEMA, "description": "The image itself (single mode: as the img field)."}}
        content.update({media_type: binary for media_type in BINARY_MEDIA_TYPES})
    if any(slot in names for slot in IMAGE_SLOTS):
        properties = {name: part_schema(name, field) for name, field in model.model_fields.items()}
        content[MULTIPART_MEDIA_TYPE] = {"schema": {"type": "object", "properties": properties}}
    return content


def part_schema(name: str, field: FieldInfo) -> dict[str, Any]:
    """A form field: text (its value's type said in words; an empty field counts as not given), or a file."""
    if name in IMAGE_SLOTS:
        return {**BINARY_SCHEMA, "description": "An image file (its base64 as text is accepted too)."}
    if wants_json(field.annotation):
        kind = "a JSON string"
    else:
        kinds = [kind for kind in typing.get_args(field.annotation) or (field.annotation,) if kind is not type(None)]
        kind = FORM_VALUE_KINDS.get(kinds[0], "text") if kinds else "text"
    # "example": "" keeps Swagger UI from filling the field with a placeholder value it would then send.
    return {
        "type": "string",
        "description": f"{(field.description or name).rstrip('.')}. As a form field: {kind}.",
        "example": "",
    }


def text_refused() -> ApiError:
    return ApiError(
        "Content-Type: text/plain is not read; send JSON as application/json (or with no Content-Type), "
        "an image as image/* or application/octet-stream, a form as multipart/form-data",
        code="unsupported_media_type",
        status_code=415,
    )


def unsupported(names: list[str]) -> ApiError:
    return ApiError(
        f"request body: this route takes a JSON body ({', '.join(names)}), not an upload",
        code="unsupported_media_type",
        status_code=415,
    )
