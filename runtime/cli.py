"""``python -m runtime serve``: the local HTTP server. (Baking a model folder: ``python -m runtime.bake``.)"""

from __future__ import annotations

import argparse
import logging
import sys

from runtime.errors import ModelUnavailable
from runtime.settings import DEFAULT_MODEL, DEFAULT_PRETRAINED, Settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m runtime", description="Image Similarity API, locally.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP API on this machine")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--model", help=f"OpenCLIP architecture (default {DEFAULT_MODEL})")
    serve.add_argument("--pretrained", help=f"OpenCLIP pretrained tag (default {DEFAULT_PRETRAINED})")
    serve.add_argument("--weights", help="local checkpoint file (instead of downloading --pretrained)")
    serve.add_argument("--model-config", help="extra OpenCLIP model config JSON (file or folder)")
    serve.add_argument("--model-dir", help="a folder written by 'python -m runtime.bake'")
    serve.add_argument("--smoke", action="store_true", help="random weights: try the API offline, no download")
    serve.add_argument("--device", help="cpu, cuda or auto (default)")
    serve.add_argument("--engine", choices=["auto", "torch", "onnx"], help="inference engine (default auto)")
    serve.add_argument(
        "--onnx-precision", choices=["auto", "fp32", "int8"], help="onnx engine precision (default auto: as baked)"
    )
    serve.add_argument(
        "--no-micro-batching",
        dest="micro_batching",
        action="store_false",
        default=None,
        help="one forward pass per request, even under concurrency",
    )
    serve.add_argument("--data-dir", help="where the embedded store keeps image libraries (default ./data)")
    serve.add_argument(
        "--allow-network",
        action="append",
        dest="fetch_allow_networks",
        metavar="CIDR",
        help="let URL inputs reach this non-public network (e.g. 127.0.0.1/32 for local tests); repeatable",
    )
    serve.add_argument("--sagemaker", action="store_true", help="also answer POST /invocations (SageMaker contract)")
    serve.add_argument("--log-level", default="info")
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides = {
        "model": args.model,
        "pretrained": args.pretrained,
        "weights": args.weights,
        "model_config": args.model_config,
        "model_dir": args.model_dir,
        "smoke": args.smoke or None,
        "device": args.device,
        "engine": args.engine,
        "onnx_precision": args.onnx_precision,
        "micro_batching": args.micro_batching,
        "data_dir": args.data_dir,
        "fetch_allow_networks": tuple(args.fetch_allow_networks) if args.fetch_allow_networks else None,
    }
    return Settings.from_env(**overrides)


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from runtime.api.app import create_app

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings_from_args(args)
    try:
        app = create_app(settings, sagemaker=args.sagemaker)
    except ModelUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if settings.smoke:
        logging.getLogger("runtime").warning("SMOKE MODE: random weights, the vectors mean nothing")
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    return 1
