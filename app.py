#!/usr/bin/env python3
"""CDK entry point: reads the context flags, builds the root stack and runs cdk-nag at synth.

    npx aws-cdk@2.1148.1 deploy -c backend=sagemaker -c auth=NONE     # through the CDK CLI
    python app.py -c backend=sagemaker                                 # synthesize into cdk.out/

A flag with a value that is not allowed stops synth with a message naming the flag and the
allowed values (see infra/config.py for every flag; cdk.json holds the defaults).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from infra.builder import build_app  # noqa: E402
from infra.config import ConfigError  # noqa: E402


def context_arguments(argv: list[str]) -> dict[str, str]:
    """``-c name=value`` / ``--context name=value`` pairs, for runs without the CDK CLI."""
    flags: dict[str, str] = {}
    for option, value in zip(argv, argv[1:]):
        if option in ("-c", "--context"):
            name, separator, text = value.partition("=")
            if not separator:
                raise ConfigError(f"context argument {value!r} is not name=value")
            flags[name] = text
    return flags


def main(argv: list[str]) -> int:
    try:
        # Under the CLI, CDK_OUTDIR names the output folder; alone, write to cdk.out like the CLI.
        app = build_app(context_arguments(argv), outdir=None if os.environ.get("CDK_OUTDIR") else "cdk.out")
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
