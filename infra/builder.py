"""Build the CDK app from context flags: used by ``app.py`` and by the tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aws_cdk import App

from infra.config import check_flag_names, load_config
from infra.nag import add_nag_checks
from infra.root_stack import ImageSimilarityStack

CDK_JSON = Path(__file__).resolve().parents[1] / "cdk.json"


def cdk_json_context() -> dict[str, Any]:
    """The flag defaults and feature flags of ``cdk.json`` (the CDK CLI passes them itself)."""
    return json.loads(CDK_JSON.read_text())["context"]


def build_app(
    flags: dict[str, Any] | None = None, *, nag: bool = True, validation: bool = True, outdir: str | None = None
) -> App:
    """``flags`` override cdk.json's context (the CLI's ``-c`` values override both).

    Raises ``infra.config.ConfigError`` naming the flag when a name or a value is not allowed.
    """
    app = App(
        context={**cdk_json_context(), **(flags or {})}, outdir=outdir, builtin_cloud_formation_validation=validation
    )
    check_flag_names(app.node.get_all_context())
    config = load_config(app.node.try_get_context)
    ImageSimilarityStack(app, config.stack_name, config=config)
    if nag:
        add_nag_checks(app)
    return app
