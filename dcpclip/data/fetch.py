"""Fetch the files a dataset is prepared from: pooch downloads each one to `<raw_root>/<filename>`,
verifies its checksum, and keeps it. Local files (a mirror folder, the user's ADE20K archive, the synthetic
host) go through the same code as `file://` URLs.

pooch verifies hashes and draws progress bars but restarts an interrupted HTTP download from zero;
`ResumableHTTPDownloader` keeps the partial data in `<filename>.part` and asks the server only for the rest
(an HTTP Range request), still through pooch's own `HTTPDownloader`.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import urllib.parse
from pathlib import Path

import pooch

from dcpclip.data.config import DataConfig
from dcpclip.data.errors import DataError
from dcpclip.data.sources import (
    ADE20K_FULL_HELP,
    LOCK_PATH,
    REAL,
    Registry,
    Source,
    read_lock,
    record_lock,
    with_mirror,
    with_user_archive,
)


@dataclasses.dataclass(frozen=True)
class Fetched:
    source: Source
    path: Path
    verified_hash: str  # the checksum this file was verified against ("md5:..", "sha256:..")


class ResumableHTTPDownloader:
    """A pooch downloader that resumes: bytes already in `part_path` are kept and the rest is requested."""

    def __init__(self, part_path: Path, progressbar: bool = True):
        self.part_path = part_path
        self.progressbar = progressbar

    def __call__(self, url: str, output_file: str, pooch_instance) -> None:
        import requests  # pooch's own dependency

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


def fetch_source(
    source: Source, raw_dir: Path, *, lock_path: Path = LOCK_PATH, progressbar: bool = True
) -> Fetched:
    """Download `source` into `raw_dir` (or keep the copy there) and verify its checksum."""
    raw_dir = Path(raw_dir)
    target = raw_dir / source.filename
    locked = read_lock(lock_path).get(source.key)
    known_hash = source.known_hash or (f"sha256:{locked['sha256']}" if locked else None)
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
    if known_hash is None:
        known_hash = f"sha256:{pooch.file_hash(str(path))}"
        record_lock(source, known_hash.removeprefix("sha256:"), path.stat().st_size, lock_path)
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
