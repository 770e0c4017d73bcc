"""``python -m runtime serve``: the local HTTP server.

Flags override the ``IMSIM_*`` environment. Whatever cannot work is refused before the model loads,
in one line (``error: ...``) and exit code 2: an unknown or invalid setting, a bad combination, a
data directory that cannot be written, a ``--host`` beyond loopback without an API key (unless
``--insecure-no-auth``, which prints a warning at start-up), a port in
use, ``--device cuda`` without a GPU, weights that are neither cached nor downloadable. Once the model
is loaded the library store opens, so a database that is damaged, emptied or read-only is refused the
same way (exit 2), not answered 503 later.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import socket
import sys
import tempfile
import threading
import typing
from pathlib import Path
from typing import Any

from runtime.allocator import keep_freed_memory
from runtime.cli.parsing import HelpFormatter
from runtime.errors import ApiError, ModelUnavailable, SettingsError
from runtime.observability import configure_logs
from runtime.settings import SETTINGS_DOC, Device, Settings

FLAG_OF_FIELD = {
    "fetch_allow_networks": "--allow-network",
    "model_config_path": "--model-config",
    "micro_batching": "--no-micro-batching",
    "allowed_hosts": "--allowed-host",
}
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def default_of(field: str) -> str:
    value = Settings.model_fields[field].default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "none"
    return str(value)


def setting_help(text: str, field: str) -> str:
    return f"{text} (default: {default_of(field)}; env IMSIM_{field.upper()})"


def add_parser(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the HTTP API on this machine",
        description="Run the HTTP API (and the API Explorer) on this machine.",
        formatter_class=HelpFormatter,
        epilog=(
            "Every setting is also an environment variable IMSIM_<NAME>; flags override them.\n"
            f"All settings, their defaults and allowed values: {SETTINGS_DOC}"
        ),
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=port_number, default=8080, help="port to listen on (default: 8080)")
    serve.add_argument("--model", help=setting_help("OpenCLIP architecture", "model"))
    serve.add_argument("--pretrained", help=setting_help("OpenCLIP pretrained tag", "pretrained"))
    serve.add_argument(
        "--weights", metavar="PATH", help=setting_help("local checkpoint file, instead of downloading", "weights")
    )
    serve.add_argument(
        "--model-config",
        metavar="PATH",
        help=setting_help("extra OpenCLIP model config JSON (file or folder)", "model_config_path"),
    )
    serve.add_argument(
        "--model-dir", metavar="PATH", help=setting_help("a folder written by 'python -m runtime.bake'", "model_dir")
    )
    serve.add_argument(
        "--smoke", action="store_true", default=None, help=setting_help("random weights: no download", "smoke")
    )
    serve.add_argument(
        "--device", choices=typing.get_args(Device), help=setting_help("where the torch engine computes", "device")
    )
    serve.add_argument("--engine", choices=["auto", "torch", "onnx"], help=setting_help("inference engine", "engine"))
    serve.add_argument(
        "--onnx-precision",
        choices=["auto", "fp32", "int8"],
        help=setting_help("onnx engine precision", "onnx_precision"),
    )
    serve.add_argument(
        "--no-micro-batching",
        dest="micro_batching",
        action="store_false",
        default=None,
        help="one forward pass per request, even under concurrency (default: micro-batching on)",
    )
    serve.add_argument(
        "--data-dir", metavar="PATH", help=setting_help("where the embedded store keeps image libraries", "data_dir")
    )
    serve.add_argument(
        "--allow-network",
        action="append",
        dest="fetch_allow_networks",
        metavar="CIDR",
        help="let URL inputs reach this non-public network (e.g. 127.0.0.1/32 for local tests); repeatable "
        "(default: none; env IMSIM_FETCH_ALLOW_NETWORKS, comma-separated)",
    )
    serve.add_argument(
        "--allowed-host",
        action="append",
        dest="allowed_hosts",
        metavar="NAME",
        help="a Host name this server answers, besides its --host ('*': any); repeatable, replaces the default "
        "(default: localhost, 127.0.0.1, ::1; env IMSIM_ALLOWED_HOSTS, comma-separated)",
    )
    serve.add_argument(
        "--api-key",
        metavar="KEY",
        help="answer only requests carrying KEY in the x-api-key header (GET /ping and the API Explorer's "
        "files aside); required with a --host beyond loopback (default: unset; env IMSIM_API_KEY)",
    )
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="listen beyond loopback without --api-key: anyone who reaches the address can use the API "
        "(a warning is printed at start-up); for a trusted network or a proxy that authenticates",
    )
    serve.add_argument(
        "--sagemaker", action="store_true", help="also answer POST /invocations (the SageMaker container contract)"
    )
    serve.add_argument("--log-level", default="info", choices=LOG_LEVELS, help="server log level (default: info)")


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0-65535)")
    return port


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The environment's settings with the flags given on top; raises ``SettingsError``."""
    overrides: dict[str, Any] = {
        "model": args.model,
        "pretrained": args.pretrained,
        "weights": args.weights,
        "model_config_path": args.model_config,
        "model_dir": args.model_dir,
        "smoke": args.smoke,
        "device": args.device,
        "engine": args.engine,
        "onnx_precision": args.onnx_precision,
        "micro_batching": args.micro_batching,
        "data_dir": args.data_dir,
        "fetch_allow_networks": tuple(args.fetch_allow_networks) if args.fetch_allow_networks else None,
        "allowed_hosts": tuple(args.allowed_hosts) if args.allowed_hosts else None,
        "api_key": args.api_key,
    }
    labels = {field: FLAG_OF_FIELD.get(field, "--" + field.replace("_", "-")) for field in overrides}
    return Settings.from_env(labels=labels, **overrides)


def check_data_dir(settings: Settings, flag_given: bool) -> None:
    """The embedded store (and the on-demand ONNX export) write into ``data_dir``: refuse one that
    cannot be written now, rather than answer 500 to the first library request."""
    if settings.store != "local" and settings.engine != "onnx":
        return
    name = "--data-dir" if flag_given else "IMSIM_DATA_DIR"
    folder = Path(settings.data_dir).absolute()
    existing = folder
    while not existing.exists():  # the store creates the missing part on first use
        existing = existing.parent
    if not existing.is_dir():
        raise SettingsError(f"{name}={settings.data_dir!r}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SettingsError(f"{name}={settings.data_dir!r}: {existing} cannot be written by this user")
    try:  # the permission bits are not the whole story: /proc says yes to root, a read-only mount too
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise SettingsError(f"{name}={settings.data_dir!r}: cannot be written ({error.strerror})") from error


def check_key_beyond_loopback(settings: Settings, host: str, sagemaker: bool, insecure: bool = False) -> str | None:
    """Beyond loopback, other machines reach the server: only clients with its key may use it, unless
    ``--insecure-no-auth`` says so (then the warning to print). The SageMaker container is exempt:
    only SageMaker reaches it, and InvokeEndpoint is IAM-signed."""
    if sagemaker or settings.api_key or is_loopback(host):
        return None
    if insecure:
        return (
            f"warning: --insecure-no-auth: listening on {host} without an API key; anyone who can reach "
            "this address can read, add and delete images"
        )
    raise SettingsError(
        f"--host {host}: not a loopback address, so other machines can reach the API; "
        "give --api-key (or IMSIM_API_KEY) so that only clients with the key can use it, "
        "or --insecure-no-auth to serve it to them all"
    )


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def check_port_free(host: str, port: int) -> None:
    """A port in use is refused in one line (uvicorn would log it after loading the model)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise SettingsError(f"--host {host} --port {port}: cannot listen there ({exc.strerror})") from None


def urls(settings: Settings, host: str, port: int) -> list[str]:
    """What start-up prints: where the API answers, and the explorer and library page when they are on."""
    from runtime.api.routes.explorer import EXPLORER_PATH
    from runtime.api.routes.library_page import PAGE_PATH

    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    base = f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"
    lines = [f"Image Similarity API: {base}"]
    if settings.explorer:
        lines.append(f"API Explorer:         {base}{EXPLORER_PATH}")
        lines.append(f"Library page:         {base}{PAGE_PATH}")
    return lines


def show_urls(lines: list[str], log_format: str) -> None:
    """Printed as they are; with JSON logs, logged instead, since stdout then carries only JSON lines."""
    if log_format == "json":
        for line in lines:
            logging.getLogger("runtime").info(line)
    else:
        print("\n".join(lines), flush=True)


def run(args: argparse.Namespace) -> int:
    keep_freed_memory()
    try:
        settings = settings_from_args(args)
        configure_logs(settings.log_format, args.log_level.upper())
        check_data_dir(settings, flag_given=args.data_dir is not None)
        warning = check_key_beyond_loopback(settings, args.host, args.sagemaker, args.insecure_no_auth)
        check_port_free(args.host, args.port)
        if warning is not None:
            print(warning, file=sys.stderr, flush=True)
        # The checks above import nothing heavy, so they answer at once; the model loads below,
        # in a thread, while the web stack is imported.
        from runtime.engines import load_engine_in_background
        from runtime.engines.model_folder import settings_for_model_dir

        settings = settings_for_model_dir(settings)
        engine = load_engine_in_background(settings)
        from runtime.api.app import create_app

        # The SageMaker container's requests come from SageMaker, under names it does not announce.
        served_on = None if args.sagemaker else args.host
        app = create_app(settings, engine=engine.result(), sagemaker=args.sagemaker, served_on=served_on)
        if app.state.libraries is not None:
            app.state.libraries.open()
    except (SettingsError, ModelUnavailable, ApiError) as exc:
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        return 2
    if settings.smoke:
        logging.getLogger("runtime").warning("SMOKE MODE: random weights, the vectors mean nothing")
    show_urls(urls(settings, args.host, args.port), settings.log_format)
    import uvicorn

    from runtime.api.connections import server_options

    log_config = None if settings.log_format == "json" else uvicorn.config.LOGGING_CONFIG  # json: ours
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,
        log_config=log_config,
        **server_options(settings),
    )
    leave_slow_threads()
    return 0


def leave_slow_threads() -> None:
    """The server has stopped and its store is closed: the process ends now. A batch thread still
    waiting on a slow fetch (an import's, left ``interrupted`` at shutdown) would otherwise hold the
    interpreter's exit until the fetch's timeout (``concurrent.futures`` joins its workers at exit)."""
    if any(thread.is_alive() and not thread.daemon for thread in threading.enumerate()[1:]):
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
