"""Query parameters a route does not take are refused, on every route, with the one the caller meant.

FastAPI reads the query parameters a route declares and ignores the others: ``?limt=10`` would answer
100 images without a word. This dependency, installed app-wide, answers 400 ``unknown_field`` instead.
A route whose body may be an image or a form also takes its body's options there (``runtime.api.bodies``).
"""

from __future__ import annotations

from fastapi import Request
from fastapi.routing import APIRoute

from runtime.api.bodies import BodyRoute, body_model
from runtime.api.field_hints import unknown_field_hint
from runtime.errors import BadRequest

UPLOAD_ONLY = ("img", "img_1", "img_2")  # image slots come in the body, never in the query


def known_query_names(route: APIRoute) -> list[str]:
    names = [parameter.alias for parameter in route.dependant.query_params]
    model = body_model(route.endpoint) if isinstance(route, BodyRoute) else None
    if model is not None:
        names += [name for name in model.model_fields if name not in UPLOAD_ONLY]
    return names


async def refuse_unknown_query(request: Request) -> None:
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not request.query_params:
        return
    known = known_query_names(route)
    for name in request.query_params:
        if name not in known:
            hint = unknown_field_hint(name, known, takes="this route takes")
            raise BadRequest(f"query parameter '{name}': unknown; {hint}", code="unknown_field")
