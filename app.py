#!/usr/bin/env python3
"""CDK entry point: reads the context flags, builds the root stack and runs cdk-nag at synth.

    npx aws-cdk@2.1148.1 deploy -c backend=sagemaker -c auth=NONE     # through the CDK CLI
    python app.py -c backend=sagemaker                                 # synthesize into cdk.out/

A flag with a value that is not allowed stops synth with a message naming the flag and the
allowed values, and an unknown flag with the closest known one (exit code 2; see infra/config.py
for every flag; cdk.json holds the defaults).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from infra.builder import build_app
from infra.config import ConfigError

CDK_CLI = "npx aws-cdk@2.1148.1"  # the pinned CLI version docs/deploy.md uses


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
    under_cli = bool(os.environ.get("CDK_OUTDIR"))
    try:
        # Under the CLI, CDK_OUTDIR names the output folder; alone, write to cdk.out like the CLI.
        flags = context_arguments(argv)
        app = build_app(flags, outdir=None if under_cli else "cdk.out")
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    assembly = app.synth()
    if not under_cli:
        print(next_steps(assembly.directory, [stack.template_file for stack in assembly.stacks], flags))
    return 0


def next_steps(directory: str, root_templates: list[str], flags: dict[str, str]) -> str:
    """Where the templates are and what to run next (``python app.py`` alone does not deploy)."""
    folder = os.path.relpath(directory)
    nested = sorted(name for name in os.listdir(directory) if name.endswith(".nested.template.json"))
    context = "".join(f" -c {name}={value}" for name, value in flags.items())
    return (
        f"Wrote {', '.join(root_templates)} and {len(nested)} nested templates to {folder}/\n"
        f"Next: {CDK_CLI} bootstrap (once per account and Region), then {CDK_CLI} deploy{context}\n"
        "(the CLI builds and pushes the container images; see docs/deploy.md)"
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
