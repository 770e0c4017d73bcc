"""Request bodies to embedder inputs: which mode a similarity request is in, and which slot holds what.

This is where HTTP field names (``url_1``, ``inputs[3].img``) meet the embedder's plain inputs.
"""

from __future__ import annotations

from runtime.api.openai_schemas import EmbeddingInput, ImagePart, TextPart
from runtime.api.schemas import SimilarityRequest, Slot
from runtime.embedder import Input
from runtime.errors import BadRequest

SLOT_KINDS = ("url", "img", "text")


def slot_input(values: dict[str, str | bytes | None], fields: dict[str, str], where: str) -> Input:
    """Exactly one of url / img / text; ``fields`` maps each kind to its request field name."""
    given = [kind for kind in SLOT_KINDS if values.get(kind) is not None]
    names = " or ".join(fields[kind] for kind in SLOT_KINDS)
    if not given:
        raise BadRequest(f"{where}: give one of {names}", code="missing_input")
    if len(given) > 1:
        both = " and ".join(fields[kind] for kind in given)
        raise BadRequest(f"{where}: give only one of {names}, not {both}", code="ambiguous_input")
    kind = given[0]
    value = values[kind]
    assert value is not None
    return Input(kind, value, fields[kind])


def parse_request(request: SimilarityRequest, max_batch: int) -> tuple[str, list[Input]]:
    """The request's mode (``single``, ``pair`` or ``batch``) and its inputs, in order."""
    data = request.model_dump()
    single = {kind: data[kind] for kind in SLOT_KINDS}
    first = {kind: data[f"{kind}_1"] for kind in SLOT_KINDS}
    second = {kind: data[f"{kind}_2"] for kind in SLOT_KINDS}
    modes = [
        name
        for name, used in (
            ("single", any(v is not None for v in single.values())),
            ("pair", any(v is not None for v in (*first.values(), *second.values()))),
            ("batch", request.inputs is not None),
        )
        if used
    ]
    if not modes:
        raise BadRequest(
            "request body: give url, img or text (single mode); url_1/img_1/text_1 and url_2/img_2/text_2 "
            "(pair mode); or inputs (batch mode)",
            code="missing_input",
        )
    if len(modes) > 1:
        raise BadRequest(
            f"request body: fields of {' and '.join(modes)} mode are mixed; use one mode", code="ambiguous_input"
        )
    mode = modes[0]
    if mode == "single":
        return mode, [slot_input(single, {k: k for k in SLOT_KINDS}, "request body")]
    if mode == "pair":
        return mode, [
            slot_input(first, {k: f"{k}_1" for k in SLOT_KINDS}, "slot 1"),
            slot_input(second, {k: f"{k}_2" for k in SLOT_KINDS}, "slot 2"),
        ]
    return mode, batch_inputs(request.inputs or [], max_batch)


def batch_inputs(slots: list[Slot], max_batch: int) -> list[Input]:
    if not slots:
        raise BadRequest(f"inputs: the list is empty; give 1 to {max_batch} slots", code="missing_input")
    if len(slots) > max_batch:
        raise BadRequest(f"inputs: {len(slots)} slots; at most {max_batch} per request", code="batch_too_large")
    inputs = []
    for index, slot in enumerate(slots):
        fields = {kind: f"inputs[{index}].{kind}" for kind in SLOT_KINDS}
        inputs.append(slot_input(slot.model_dump(), fields, f"inputs[{index}]"))
    return inputs


IMAGE_URL_SCHEMES = ("http://", "https://", "s3://")


def openai_inputs(value: str | list[EmbeddingInput], max_batch: int) -> list[Input]:
    """``POST /v1/embeddings``' ``input``: one string or a list, each an image or a text (see INPUT_DOC)."""
    if isinstance(value, str):
        return [openai_input(value, "input")]
    if not value:
        raise BadRequest(f"input: the list is empty; give 1 to {max_batch} inputs", code="missing_input")
    if len(value) > max_batch:
        raise BadRequest(f"input: {len(value)} inputs; at most {max_batch} per request", code="batch_too_large")
    return [openai_input(item, f"input[{index}]") for index, item in enumerate(value)]


def openai_input(item: EmbeddingInput, field: str) -> Input:
    if isinstance(item, TextPart):
        return Input("text", item.text, f"{field}.text")
    if isinstance(item, ImagePart):
        return image_string(item.image, f"{field}.image")
    if item.lower().startswith("data:") or _is_image_url(item):
        return image_string(item, field)
    return Input("text", item, field)


def image_string(value: str, field: str) -> Input:
    """An image given as a string: a URL is fetched, anything else is base64 (a data: URL's prefix goes)."""
    return Input("url", value, field) if _is_image_url(value) else Input("img", value, field)


def _is_image_url(value: str) -> bool:
    return value.lower().startswith(IMAGE_URL_SCHEMES) and not any(char.isspace() for char in value)
