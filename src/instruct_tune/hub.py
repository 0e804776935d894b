"""Hub model names (`--model Qwen/Qwen2.5-0.5B`): tell them from local paths, and find them fast.

Given a hub name, transformers looks in the Hugging Face cache and asks the hub for every file; with
no network it retries each request for ~50 s ("Retrying in 8s [Retry 5/5]") before failing. Here a
hub name whose files are in the cache loads from its cached snapshot, a plain local directory, so
no request is made at all. Only when the cache lacks the files is the hub probed, once per process
with a short timeout; when it cannot be reached (or HF_HUB_OFFLINE=1) the ModelLoadError says
where the cache is and how to bring the model onto this machine.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path

from huggingface_hub import constants, snapshot_download
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from .errors import ModelLoadError

# Names ending like a file are paths (a mistyped 'run/config.json' is not a repo id to look up);
# other suffixes are part of hub names: 'Qwen2.5-0.5B', 'TinyLlama-1.1B-Chat-v1.0'.
FILE_SUFFIXES = (".json", ".jsonl", ".yaml", ".yml", ".txt", ".safetensors", ".bin", ".pt",
                 ".pth", ".ckpt", ".pkl", ".gguf", ".ggml", ".onnx")
PROBE_TIMEOUT_S = 3.0
_TRUE = ("1", "true", "yes", "on")


def is_hub_name(name: str) -> bool:
    """A hub repo id ('gpt2', 'org/model'), as huggingface_hub's validate_repo_id accepts them,
    that does not look like a path: './x', '/x', '~/x', 'a/b/c', 'x/model.safetensors', and
    'runs/x' when ./runs is a folder (see shadowing_folder)."""
    return _repo_id_shaped(name) and shadowing_folder(name) is None


def shadowing_folder(name: str) -> str | None:
    """The local folder that makes an 'org/model'-shaped name a local path: 'runs' for 'runs/x'
    when ./runs exists (a typo in a run path, not a hub organisation)."""
    first = name.split("/", 1)[0]
    return first if "/" in name and _repo_id_shaped(name) and Path(first).is_dir() else None


def _repo_id_shaped(name: str) -> bool:
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return Path(name).suffix.lower() not in FILE_SUFFIXES


# The environment is read at each call (huggingface_hub reads it once, at import), so what a user
# or a test sets is what counts; the defaults are huggingface_hub's own.
def hub_cache() -> Path:
    """The Hugging Face hub cache directory (HF_HUB_CACHE, default ~/.cache/huggingface/hub)."""
    return Path(os.path.expanduser(os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE))


def hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def hub_offline() -> bool:
    """HF_HUB_OFFLINE=1 (or TRANSFORMERS_OFFLINE=1): never contact the hub."""
    return any(os.environ.get(v, "").strip().lower() in _TRUE
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def cached_snapshot(name: str) -> Path | None:
    """The cached snapshot directory of hub repo `name` (its main revision); None if not cached.
    Reads the cache only (refs/main -> snapshots/<commit>/), never the network."""
    try:
        return Path(snapshot_download(name, cache_dir=hub_cache(), local_files_only=True))
    except (OSError, ValueError):  # LocalEntryNotFoundError (an OSError), or an invalid name
        return None


def hub_reachable() -> bool:
    """Whether the hub answers at all (any HTTP status), asked once per endpoint and process."""
    return _probe(hub_endpoint())


@functools.cache
def _probe(endpoint: str) -> bool:
    from huggingface_hub.utils import get_session

    try:
        # huggingface_hub's own HTTP client (its proxy and TLS settings), one try, no retries.
        get_session().head(endpoint, timeout=PROBE_TIMEOUT_S)
    except Exception:  # DNS, refused, timeout, proxy or TLS failure: nothing could be downloaded
        return False
    return True


def resolve_hub(name: str, what: str, has: Callable[[Path], bool]) -> Path | str:
    """Where to load `what` ("model", "tokenizer", "config") of hub repo `name` from: its cached
    snapshot when `has(snapshot)` (no network), else `name` itself for transformers to download.
    A ModelLoadError when it is not cached and the hub is off (HF_HUB_OFFLINE) or unreachable."""
    snapshot = cached_snapshot(name)
    if snapshot is not None and has(snapshot):
        return snapshot
    offline = hub_offline()
    if offline or not hub_reachable():
        raise not_cached_error(name, what, snapshot, offline)
    return name


def not_cached_error(name: str, what: str, snapshot: Path | None, offline: bool) -> ModelLoadError:
    cache = hub_cache()
    where = (f"is only partly in the Hugging Face cache ({snapshot} has no {what} files)"
             if snapshot is not None else
             f"is not a local directory, and not in the Hugging Face cache ({cache})")
    why = ("downloads are off (HF_HUB_OFFLINE=1)" if offline else
           f"the hub ({hub_endpoint()}) cannot be reached to download it")
    skip = "" if offline else " Set HF_HUB_OFFLINE=1 to skip this check of the hub."
    return ModelLoadError(
        f"'{name}' {where}, and {why}. Where there is network, run `hf download {name}` (or "
        f"`huggingface-cli download {name}`) and copy that machine's hub cache to {cache} (or "
        f"point HF_HUB_CACHE at the copy), or run `hf download {name} --local-dir DIR` and pass "
        f"--model DIR, a local model directory.{skip}")
