"""Fetch published dictionaries from the Hugging Face hub, only when asked.

Nothing else in scrying touches the network for transcoders: :func:`download_published` maps a
hub repository and the folders wanted in it (glob patterns, as the hub's ``allow_patterns``) to a
plain local folder, which :func:`~scrying.transcoders.files.read_transcoders` then reads. Files
are written into ``local_dir`` as real files (not the hub cache's links to ``../blobs``, which
the readers refuse as pointing outside the folder). Without a network the hub's error becomes a
:class:`~scrying.errors.ModelLoadError` naming the repository and what to do.

Example folders: ``google/gemma-scope-2-270m-pt`` with
``transcoder_all/layer_*_width_16k_l0_small_affine`` (Gemma 3 270M, every layer);
``google/gemma-scope-2b-pt-transcoders`` with ``layer_*/width_16k/average_l0_<N>`` (one L0 per
layer; the L0s differ by layer, see the repository's listing).
"""

from __future__ import annotations

import re
from pathlib import Path

import huggingface_hub

from scrying.errors import InvalidInputError, ModelLoadError
from scrying.transcoders.file_checks import one_line

_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")


def download_published(
    repo_id: str,
    folders: list[str],
    local_dir: str | Path,
    *,
    revision: str | None = None,
    endpoint: str | None = None,
) -> Path:
    """Download ``folders`` (glob patterns of folders in ``repo_id``, e.g.
    ``transcoder_all/layer_*_width_16k_l0_small_affine``) into ``local_dir``; returns
    ``local_dir``. Checks its arguments before any request; raises ``ModelLoadError`` when the hub
    cannot be reached or has no such files."""
    if not isinstance(repo_id, str) or not _REPO.fullmatch(repo_id):
        raise InvalidInputError(f"repo_id {repo_id!r}: expected OWNER/NAME (e.g. google/gemma-scope-2-270m-pt)")
    if not folders or any(not isinstance(f, str) or not f or f.startswith("/") or ".." in f.split("/") for f in folders):
        raise InvalidInputError(f"folders {folders!r}: expected relative folder patterns inside the repository")
    patterns = [f"{f.rstrip('/')}/*" for f in folders]
    try:
        huggingface_hub.snapshot_download(
            repo_id, revision=revision, allow_patterns=patterns, local_dir=str(local_dir), endpoint=endpoint
        )
    except Exception as err:  # offline, no such repository or revision, a refused connection
        raise ModelLoadError(
            f"could not download {patterns} from the hub repository {repo_id!r} ({one_line(err)}); "
            "with no network, download the folders elsewhere and point at the local copy"
        ) from err
    out = Path(local_dir)
    if not any(out.glob(p) for p in patterns):
        raise ModelLoadError(f"{repo_id}: nothing matched {patterns}; check the folder names in the repository's listing")
    return out
