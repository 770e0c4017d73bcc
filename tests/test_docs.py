"""The README and the docs pages link only to files that exist here, and to headings those files have."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped (not - or _), spaces as hyphens."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    headings = re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_relative_link_and_anchor_resolves(page):
    for target in LINK.findall(re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: {target} points to nothing"
        assert ROOT in linked.parents or linked == ROOT, f"{page.name}: {target} points outside the repository"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked), f"{page.name}: {target}: no such heading in {linked.name}"


def test_the_api_reference_table_lists_every_route_the_app_serves():
    """docs/api.md's first table: one row per method and path, every route of the app in it."""
    from runtime.api.app import create_app, leaf_routes
    from runtime.settings import Settings

    app = create_app(Settings(explorer=True), serve_model=False)
    served = {
        f"{method} {route.path}"
        for route in leaf_routes(app.router.routes)
        if getattr(route, "include_in_schema", True)
        for method in route.methods or ()
    }
    text = (ROOT / "docs" / "api.md").read_text()
    table = text.split("\n\n")[2]  # the heading, the introduction, then the route table
    listed = set(re.findall(r"^\| `([A-Z]+ /[^`?]*)", table, flags=re.MULTILINE))
    assert served - listed == set(), "routes missing from docs/api.md's table"
    assert listed - served == set(), "docs/api.md's table lists routes the app does not serve"


def test_the_readme_s_base64_pipeline_sends_a_real_photo(server, tmp_path):
    """The README's curl pattern for base64, run as written, with a photo far past a command line's limit."""
    import io
    import json
    import subprocess

    import numpy as np
    from PIL import Image

    noise = np.random.default_rng(0).integers(0, 256, (900, 900, 3), dtype=np.uint8)
    photo = io.BytesIO()
    Image.fromarray(noise).save(photo, format="JPEG", quality=95)
    assert len(photo.getvalue()) > 300_000  # its base64 is over 128 KiB, one argument's limit on Linux
    (tmp_path / "a.jpg").write_bytes(photo.getvalue())
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"^\{ printf '\{\"img_1\".*\n.*@-", readme, flags=re.MULTILINE)
    assert command, "the README's base64 example is not where this test looks"
    script = command.group(0).replace("localhost:8080", server.url)
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert 0 <= json.loads(done.stdout)["similarity"] <= 1
