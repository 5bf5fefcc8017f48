"""Fetch the files a dataset is prepared from: pooch downloads each one to `<raw_root>/<filename>`,
verifies its checksum, and keeps it. Local files (a mirror folder, the user's ADE20K archive, the synthetic
host) go through the same code as `file://` URLs.

pooch verifies hashes and draws progress bars but restarts an interrupted HTTP download from zero;
`ResumableHTTPDownloader` keeps the partial data in `<filename>.part` and asks the server only for the rest
(an HTTP Range request), still through pooch's own `HTTPDownloader`.

A file already in the raw folder is re-verified before it is used, without downloading: its size against
the published or locked size first, then its checksum, unless a verification stamp
(`<raw_root>/.verified/<filename>.json`: hash, size, mtime) shows it unchanged since its last check. A
mismatch is a "truncated or corrupt download" naming the file and the fix (delete it and fetch again),
never a missing member found later inside it. A download that fails (no network, a dead host) names the
file, the URL and where to put a copy fetched by hand.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.parse
from pathlib import Path

import pooch
import requests  # pooch's own dependency

from dcpclip.atomic import write_text
from dcpclip.data.config import DataConfig
from dcpclip.data.errors import DataError
from dcpclip.data.sources import (
    ADE20K_FULL_HELP,
    LOCK_PATH,
    REAL,
    Fetched,
    Registry,
    Source,
    read_lock,
    record_lock,
    with_mirror,
    with_user_archive,
)


class ResumableHTTPDownloader:
    """A pooch downloader that resumes: bytes already in `part_path` are kept and the rest is requested."""

    def __init__(self, part_path: Path, progressbar: bool = True):
        self.part_path = part_path
        self.progressbar = progressbar

    def __call__(self, url: str, output_file: str, pooch_instance) -> None:
        offset = self.part_path.stat().st_size if self.part_path.exists() else 0
        with open(self.part_path, "ab") as part:

            def restart_if_range_ignored(response, *args, **kwargs):
                if response.status_code == 200 and part.tell() > 0:  # server sent the whole file again
                    part.seek(0)
                    part.truncate()

            headers = {"Range": f"bytes={offset}-"} if offset else {}
            download = pooch.HTTPDownloader(
                progressbar=self.progressbar, headers=headers, hooks={"response": restart_if_range_ignored}
            )
            try:
                download(url, part, pooch_instance)
            except requests.HTTPError as err:
                if err.response is None or err.response.status_code != 416:  # 416: nothing left to send
                    raise
        os.replace(self.part_path, output_file)


def copy_local(url: str, output_file: str, pooch_instance) -> None:
    """pooch downloader for file:// URLs (mirror folders, user-supplied archives, the synthetic host)."""
    path = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path))
    if not path.is_file():
        raise DataError(f"{path}: no such file (source URL {url})")
    shutil.copyfile(path, output_file)


def _downloader(url: str, part_path: Path, progressbar: bool):
    scheme = urllib.parse.urlparse(url).scheme
    if scheme == "file":
        return copy_local
    if scheme in ("http", "https"):
        return ResumableHTTPDownloader(part_path, progressbar)
    raise DataError(f"unsupported URL scheme {scheme!r} in {url} (use http(s):// or file://, or a folder)")


STAMP_DIR = ".verified"


def _stamp_path(path: Path) -> Path:
    return path.parent / STAMP_DIR / f"{path.name}.json"


def _stamp(path: Path, known_hash: str) -> dict:
    stat = path.stat()
    return {"hash": known_hash, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def refetch_hint(path: Path) -> str:
    return f"delete {path} and rerun `python -m experiments.fetch` (it downloads the file again)"


def is_current_download(path: Path, known_hash: str, size: int | None) -> bool:
    """Check a raw file already on disk (see the module docstring): True when it is the expected version,
    False when it is intact but an older one (its stamp shows it unchanged since it was verified against
    another hash: the source was updated, so it is downloaded again); a damaged file is a DataError."""
    try:
        stamp = json.loads(_stamp_path(path).read_text())
        unchanged = {k: stamp[k] for k in ("size", "mtime_ns")} == {k: _stamp(path, known_hash)[k]
                                                                     for k in ("size", "mtime_ns")}
    except (OSError, ValueError, KeyError, TypeError):
        stamp, unchanged = None, False
    if unchanged:
        return stamp["hash"] == known_hash
    found = path.stat().st_size
    if size is not None and found != size:
        raise DataError(f"{path}: truncated or corrupt download ({found} bytes, expected {size})",
                        hint=refetch_hint(path))
    algorithm, expected = known_hash.split(":", 1) if ":" in known_hash else ("sha256", known_hash)
    if pooch.file_hash(str(path), alg=algorithm) != expected.lower():
        raise DataError(f"{path}: truncated or corrupt download ({algorithm} differs from the expected "
                        f"{known_hash})", hint=refetch_hint(path))
    write_text(_stamp_path(path), json.dumps(_stamp(path, known_hash)) + "\n")
    return True


def fetch_source(
    source: Source, raw_dir: Path, *, lock_path: Path = LOCK_PATH, progressbar: bool = True
) -> Fetched:
    """Download `source` into `raw_dir` (or keep the copy there) and verify its checksum."""
    raw_dir = Path(raw_dir)
    target = raw_dir / source.filename
    locked = read_lock(lock_path).get(source.key)
    known_hash = source.known_hash or (f"sha256:{locked['sha256']}" if locked else None)
    if known_hash is not None and target.is_file() and \
            is_current_download(target, known_hash, source.size or (locked or {}).get("size")):
        return Fetched(source, target, known_hash)
    if source.url is None and not target.is_file():
        raise DataError(f"{source.key}: {source.filename} is not in {raw_dir}. {ADE20K_FULL_HELP}")
    if source.url is None:  # the user put the gated archive into the raw folder themselves
        url, downloader = target.resolve().as_uri(), copy_local
    else:
        url, downloader = (
            source.url,
            _downloader(source.url, raw_dir / f"{source.filename}.part", progressbar),
        )
    try:
        path = Path(
            pooch.retrieve(url, known_hash, fname=source.filename, path=raw_dir, downloader=downloader)
        )
    except ValueError as err:  # pooch's checksum mismatch (the bad download is already deleted)
        raise DataError(f"{source.key} ({url}): {err}") from None
    except requests.RequestException as err:  # no network, a dead host, a missing file on it
        part = raw_dir / f"{source.filename}.part"
        if part.is_file() and part.stat().st_size == 0:  # nothing to resume from
            part.unlink()
        reason = " ".join(str(err).split())[:160]
        raise DataError(
            f"{source.key}: cannot download {url} ({type(err).__name__}: {reason})",
            hint=f"download it by hand to {target}, or set data.mirror to a folder or URL that holds "
                 f"{source.filename}") from None
    if known_hash is None:
        known_hash = f"sha256:{pooch.file_hash(str(path))}"
        record_lock(source, known_hash.removeprefix("sha256:"), path.stat().st_size, lock_path)
    write_text(_stamp_path(path), json.dumps(_stamp(path, known_hash)) + "\n")
    return Fetched(source, path, known_hash)


def registry_for(cfg: DataConfig) -> Registry:
    """The registry of `cfg.source`, with the user's mirror and ADE20K archive applied."""
    if cfg.source == "synthetic":
        from dcpclip.data.synthetic import synthetic_registry

        registry = synthetic_registry(cfg.synthetic, synthetic_host_dir(cfg))
    else:
        registry = REAL
    return with_user_archive(with_mirror(registry, cfg.mirror), cfg.ade20k_full_archive)


def synthetic_host_dir(cfg: DataConfig) -> Path:
    """Where the generated raw files are served from (they are then fetched like real downloads)."""
    return Path(cfg.raw_root) / "synthetic-host"


def fetch_dataset(
    dataset: str,
    cfg: DataConfig,
    *,
    registry: Registry | None = None,
    lock_path: Path = LOCK_PATH,
    progressbar: bool = True,
) -> dict[str, Fetched]:
    """Fetch and verify every file `dataset` is prepared from; returns them by source key."""
    registry = registry or registry_for(cfg)
    return {
        key: fetch_source(source, Path(cfg.raw_root), lock_path=lock_path, progressbar=progressbar)
        for key, source in registry.for_dataset(dataset).items()
    }
