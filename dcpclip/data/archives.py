"""Unpack zip, tar and tar.gz archives safely, once per archive version.

Every member name is checked before anything is written: an absolute path, a `..` component, or a
tar link that points outside the target is refused with the archive and member named. Tar members are
then extracted with Python's `data` filter (no devices, no permission bits beyond the user's). A truncated
or corrupt archive fails with the archive named. Extraction goes to a temporary folder renamed when
complete, and is reused while the archive's verified checksum is unchanged and every file it unpacked is
still there at its size (the marker lists them): an extraction found damaged is reported by name
(`CorruptCacheWarning`), removed and unpacked again.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import tarfile
import warnings
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from dcpclip.atomic import remove_abandoned, temporary_name
from dcpclip.data.errors import DataError
from dcpclip.data.inventory import inventory, inventory_problem
from dcpclip.errors import CorruptCacheWarning

_MARKER = ".extracted-from"


def unsafe_member_reason(name: str) -> str | None:
    """Why an archive member name would escape the extraction folder, or None when it is safe."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or (path.parts and path.parts[0].endswith(":")):
        return "absolute path"
    if ".." in path.parts:
        return "'..' component"
    return None


def _check_tar_member(archive: Path, member: tarfile.TarInfo) -> None:
    reason = unsafe_member_reason(member.name)
    if reason is None and (member.issym() or member.islnk()):
        link = PurePosixPath(member.linkname)
        if link.is_absolute():
            reason = "link to an absolute path"
        else:
            base = PurePosixPath(member.name).parent if member.issym() else PurePosixPath()
            depth = 0
            for part in (base / link).parts:
                depth += -1 if part == ".." else (0 if part == "." else 1)
                if depth < 0:
                    reason = f"link to {member.linkname!r} outside the target folder"
                    break
    if reason is None and not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        reason = "device or fifo"
    if reason:
        raise DataError(f"{archive}: refusing archive member {member.name!r} ({reason})")


def _extract_tar(archive: Path, target: Path) -> None:
    with tarfile.open(archive) as tar:
        members = tar.getmembers()  # reads the whole index: a truncated tar fails here
        for member in members:
            _check_tar_member(archive, member)
        tar.extractall(target, members=members, filter="data")


def _extract_zip(archive: Path, target: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        for name in zf.namelist():
            reason = unsafe_member_reason(name)
            if reason:
                raise DataError(f"{archive}: refusing archive member {name!r} ({reason})")
        zf.extractall(target)


def extraction_problem(target: Path, archive_hash: str) -> str | None:
    """Why `target` is not a complete extraction of this archive version (None when it is)."""
    try:
        marker = json.loads((target / _MARKER).read_text())
        listed, extracted_from = dict(marker["files"]), marker["archive_hash"]
    except (OSError, ValueError, KeyError, TypeError):
        return "no readable marker"
    if extracted_from != archive_hash:
        return "another version of the archive"
    return inventory_problem(target, listed)


def extract(archive: Path, dest_root: Path, archive_hash: str) -> Path:
    """Unpack `archive` into `dest_root/<archive name>/` unless that folder already holds this version."""
    archive, dest_root = Path(archive), Path(dest_root)
    target = dest_root / archive.name
    if target.is_dir():
        problem = extraction_problem(target, archive_hash)
        if problem is None:
            return target
        if problem != "another version of the archive":
            warnings.warn(CorruptCacheWarning(f"extracted copy {target}: {problem}; removed, unpacking {archive} "
                                              "again"), stacklevel=2)
    dest_root.mkdir(parents=True, exist_ok=True)
    remove_abandoned(target)
    tmp = temporary_name(target)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        if archive.name.endswith(".zip"):
            _extract_zip(archive, tmp)
        else:
            _extract_tar(archive, tmp)
        (tmp / _MARKER).write_text(json.dumps({"archive_hash": archive_hash, "files": inventory(tmp)}) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    except tarfile.FilterError as err:
        raise DataError(f"{archive}: refusing archive member {err.tarinfo.name!r} ({err})") from None
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise DataError(f"{archive}: truncated or corrupt archive ({type(err).__name__}: {err})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
