"""Whether a pretrained tag's weights can be had: already in the local cache, or a download away.

open_clip fetches weights from the Hugging Face hub; offline, the hub client retries for about
50 seconds and logs dozens of lines before failing. This answers in a fraction of a second, before
any download starts: the cache is looked at first, then ``HF_HUB_OFFLINE``, then one TCP connection
to the hub (or to the HTTPS proxy, when one is set).
"""

from __future__ import annotations

import os
import socket
import threading
from urllib.parse import urlsplit

PROBE_TIMEOUT_S = 3.0
HOW_TO_PROCEED = "pass --weights PATH (a checkpoint), --model-dir PATH (a baked folder) or --smoke (random weights)"


def pretrained_problem(model: str, tag: str) -> str | None:
    """Why the weights of ``model``/``tag`` cannot be loaded now, in one line; None when they can
    (cached, downloadable, or unknown to open_clip, which then says so itself)."""
    import open_clip

    config = open_clip.get_pretrained_cfg(model, tag)
    if not config or "file" in config or is_cached(config):
        return None
    missing = f"the weights of {model}/{tag} are not in the local cache"
    if _truthy(os.environ.get("HF_HUB_OFFLINE")):
        return f"{missing} and HF_HUB_OFFLINE is set: {HOW_TO_PROCEED}"
    host, port = download_host(config)
    if not reachable(host, port):
        return f"{missing} and {host}:{port} cannot be reached (offline?): {HOW_TO_PROCEED}"
    return None


def is_cached(config: dict[str, str]) -> bool:
    """Whether open_clip would find the weights without downloading them."""
    if config.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache
        from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

        repo, filename = os.path.split(config["hf_hub"])
        names = [filename] if filename else [HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME]
        if filename.endswith((".bin", ".pth")):
            names.insert(0, filename[:-4] + ".safetensors")
        return any(isinstance(try_to_load_from_cache(repo, name), str) for name in names)
    if config.get("url"):
        name = os.path.basename(urlsplit(config["url"]).path)
        return os.path.exists(os.path.join(os.path.expanduser("~/.cache/clip"), name))
    return False


def download_host(config: dict[str, str]) -> tuple[str, int]:
    """Where a download would connect first: the HTTPS proxy if one is set, else the hub or URL host."""
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    if proxy:
        url = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    elif config.get("hf_hub"):
        url = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    else:
        url = urlsplit(config["url"])
    return url.hostname or "", url.port or (443 if url.scheme == "https" else 80)


def reachable(host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """One TCP connection within ``timeout`` seconds, name lookup included (run in a thread,
    because a lookup has no timeout of its own)."""
    result: list[bool] = []

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    probe = threading.Thread(target=connect, daemon=True)
    probe.start()
    probe.join(timeout + 1.0)
    return bool(result and result[0])


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}
