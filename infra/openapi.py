"""The REST API's definition (OpenAPI 3 with API Gateway's extensions), built for CloudFormation.

The API is defined by this document rather than by one CloudFormation resource per method, so
that a parameter update which removes the explorer's routes takes them out of the API at once
(CloudFormation only deletes conditional resources after it has made the new deployment, which
would snapshot the old routes). Every method names its authorization type; with API keys on, every
API method (not the explorer's page) also requires the key (``security: api_key``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aws_cdk import Aws, Fn

from runtime.contract import JSON_MEDIA_TYPE, UPLOAD_MEDIA_TYPES

INTEGRATION_TIMEOUT_MS = 29_000  # API Gateway's limit for a Lambda proxy integration
API_GATEWAY_MAX_BODY_MB = 10  # API Gateway's hard limit on a REST API's request payload
LAMBDA_MAX_PAYLOAD_MB = 6  # Lambda's limit on a synchronous invocation's event: the one a body meets first
CORS_HEADERS = "Content-Type,Authorization,X-Amz-Date,X-Amz-Security-Token,X-Amz-Content-Sha256,X-Api-Key"
API_KEY_SCHEME = "api_key"
API_KEY_HEADER = "x-api-key"
CORS_METHODS = "GET,POST,PATCH,DELETE,OPTIONS"


@dataclass(frozen=True)
class Route:
    path: str
    methods: tuple[str, ...]
    explorer: bool = False


# Every path of the API table in DESIGN.md; the explorer's only exist when it is on.
ROUTES = (
    Route("/", ("get",)),
    Route("/image-similarity", ("post",)),
    Route("/text_similarity", ("post",)),
    Route("/ping", ("get",)),
    Route("/v1/embeddings", ("post",)),
    Route("/v1/models", ("get",)),
    Route("/libraries", ("get", "post")),
    Route("/libraries/{name}", ("get", "delete")),
    Route("/libraries/{name}/images", ("get", "post")),
    Route("/libraries/{name}/images/{id}", ("get", "patch", "delete")),
    Route("/libraries/{name}/images/{id}/thumbnail", ("get",)),
    Route("/libraries/{name}/search", ("post",)),
    Route("/libraries/{name}/count", ("post",)),
    Route("/libraries/{name}/delete-images", ("post",)),
    Route("/libraries/{name}/duplicates", ("get",)),
    Route("/libraries/{name}/export", ("get",)),
    Route("/libraries/{name}/restore", ("post",)),
    Route("/libraries/{name}/imports", ("get", "post")),
    Route("/libraries/{name}/imports/{import_id}", ("get", "delete")),
    Route("/libraries/{name}/imports/{import_id}/failures", ("get",)),
    Route("/api-explorer", ("get",), explorer=True),
    Route("/api-explorer/{proxy+}", ("get",), explorer=True),
    Route("/libraries-ui", ("get",), explorer=True),
    Route("/libraries-ui/{proxy+}", ("get",), explorer=True),
)


def api_definition(
    *,
    title: str,
    api_function_arn: str,
    explorer_function_arn: str,
    authorization: str,
    api_key_condition: str,
    explorer_condition: str,
    cors_origin: str,
) -> dict[str, Any]:
    """``authorization`` (``AWS_IAM`` or ``NONE``, a token) is every API method's authorization type,
    and ``api_key_condition`` names the condition under which they also require the API key. The
    explorer's page is always open (``NONE``): a browser cannot sign it, and it holds no data."""
    api_key = Fn.condition_if(api_key_condition, [{API_KEY_SCHEME: []}], Aws.NO_VALUE)
    paths: dict[str, Any] = {}
    for route in ROUTES:
        function_arn = explorer_function_arn if route.explorer else api_function_arn
        auth = "NONE" if route.explorer else authorization
        item = _path_item(route, function_arn, auth, cors_origin, None if route.explorer else api_key)
        paths[route.path] = Fn.condition_if(explorer_condition, item, Aws.NO_VALUE) if route.explorer else item
    return {
        "openapi": "3.0.1",
        "info": {
            "title": title,
            "version": "1.0.0",
            "description": "Image Similarity API; the full reference is served at /api-explorer.",
        },
        "paths": paths,
        "components": {"securitySchemes": {API_KEY_SCHEME: {"type": "apiKey", "name": API_KEY_HEADER, "in": "header"}}},
        "x-amazon-apigateway-api-key-source": "HEADER",
        "x-amazon-apigateway-gateway-responses": _gateway_responses(cors_origin),
        # Bodies of these types reach Lambda base64-encoded, byte for byte (the runtime decodes them);
        # any other type, JSON included, stays text.
        "x-amazon-apigateway-binary-media-types": list(UPLOAD_MEDIA_TYPES),
    }


def _path_item(route: Route, function_arn: str, auth: str, cors_origin: str, api_key: Any) -> dict[str, Any]:
    item: dict[str, Any] = {method: _proxy_operation(function_arn, auth) for method in route.methods}
    if api_key is not None:
        for method in route.methods:
            item[method]["security"] = api_key
    item["options"] = _preflight_operation(cors_origin)
    parameters = _path_parameters(route.path)
    if parameters:
        item["parameters"] = parameters
    return item


def _path_parameters(path: str) -> list[dict[str, Any]]:
    names = [part[1:-1].rstrip("+") for part in path.split("/") if part.startswith("{")]
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in names]


def _proxy_operation(function_arn: str, auth: str) -> dict[str, Any]:
    return {
        "x-amazon-apigateway-auth": {"type": auth},
        "x-amazon-apigateway-integration": {
            "type": "aws_proxy",
            "httpMethod": "POST",
            "uri": Fn.sub(
                "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/"
                "${FunctionArn}/invocations",
                {"FunctionArn": function_arn},
            ),
            "passthroughBehavior": "when_no_match",
            "timeoutInMillis": INTEGRATION_TIMEOUT_MS,
        },
        "responses": {"default": {"description": "The runtime's answer (see /api-explorer)"}},
    }


def _preflight_operation(cors_origin: str) -> dict[str, Any]:
    """CORS preflight, answered by API Gateway itself: browsers send it without credentials."""
    headers = {
        name: {"schema": {"type": "string"}}
        for name in ("Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers")
    }
    return {
        "x-amazon-apigateway-auth": {"type": "NONE"},
        "responses": {"204": {"description": "CORS preflight", "headers": headers}},
        "x-amazon-apigateway-integration": {
            "type": "mock",
            "requestTemplates": {JSON_MEDIA_TYPE: '{"statusCode": 204}'},
            "responses": {
                "default": {
                    "statusCode": "204",
                    "responseParameters": {
                        f"method.response.header.{name}": value for name, value in _cors_values(cors_origin).items()
                    },
                }
            },
        },
    }


def _gateway_responses(cors_origin: str) -> dict[str, Any]:
    """Errors API Gateway answers itself (throttled, unsigned, too large...) in the API's error shape."""
    generic = '{"message": $context.error.messageString, "code": "$context.error.responseType"}'
    too_large = json.dumps(
        {
            "message": f"the request body is larger than this API takes ({LAMBDA_MAX_PAYLOAD_MB} MB, Lambda's "
            f"payload limit; API Gateway refuses over {API_GATEWAY_MAX_BODY_MB} MB): send the image by url (s3:// or https://)",
            "code": "payload_too_large",
        }
    )
    return {
        "DEFAULT_4XX": _gateway_response(generic, cors_origin),
        "DEFAULT_5XX": _gateway_response(generic, cors_origin),
        "REQUEST_TOO_LARGE": _gateway_response(too_large, cors_origin),  # 413
    }


def _gateway_response(template: str, cors_origin: str) -> dict[str, Any]:
    return {
        "responseParameters": {
            f"gatewayresponse.header.{name}": value for name, value in _cors_values(cors_origin).items()
        },
        "responseTemplates": {JSON_MEDIA_TYPE: template},
    }


def _cors_values(cors_origin: str) -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": f"'{cors_origin}'",
        "Access-Control-Allow-Methods": f"'{CORS_METHODS}'",
        "Access-Control-Allow-Headers": f"'{CORS_HEADERS}'",
    }
