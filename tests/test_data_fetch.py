"""The source registry, checksum locking, mirrors, the user-supplied ADE20K archive, resumable HTTP
downloads (a loopback server) and safe archive extraction."""

import hashlib
import http.server
import io
import tarfile
import threading
import zipfile

import pytest

from dcpclip.data.archives import extract
from dcpclip.data.config import DataConfig, SyntheticConfig
from dcpclip.data.errors import DataError
from dcpclip.data.fetch import fetch_source, registry_for
from dcpclip.data.sources import (
    CAT_SEG_COMMIT,
    DATASET_SOURCES,
    DEFINITION_FILES,
    REAL,
    Source,
    names_source,
    read_lock,
    with_mirror,
    with_user_archive,
)
from dcpclip.data.specs import SPECS
from dcpclip.data.synthetic import generate
from dcpclip.errors import CorruptCacheWarning

PROTOCOL_SHA256 = {  # docs/protocol.md, "Pinned benchmark definition files"
    "coco.json": (1903, "0d1caff40f22c2f8de07c9d3016f2521dea096ae8b51889a12d3511bc33a18e7"),
    "pascalcontext_val.txt": (61247, "903abb826516974fc79730ae21495d8a577d4293b5fd517d738cfd21b6bd1969"),
    "prepare_ade20k_full.py": (53625, "6bc2eb1f18e3db2e6139cceac5bfcc80bebde4fb1a2156d09804b2dbbdafbf99"),
}


def test_real_registry_covers_every_dataset_with_pinned_definition_files():
    assert set(DATASET_SOURCES) == set(SPECS)
    for dataset in SPECS:
        sources = REAL.for_dataset(dataset)
        assert names_source(dataset) in sources
        assert REAL.expected_images[dataset][SPECS[dataset].split] == SPECS[dataset].expected_images
    for source in DEFINITION_FILES:
        assert (
            source.url
            == f"https://raw.githubusercontent.com/KU-CVLAB/CAT-Seg/{CAT_SEG_COMMIT}/datasets/{source.filename}"
        )
        assert source.known_hash.startswith("sha256:") and len(source.known_hash) == 7 + 64 and source.size
    for filename, (size, sha256) in PROTOCOL_SHA256.items():
        source = next(s for s in DEFINITION_FILES if s.filename == filename)
        assert (source.size, source.known_hash) == (size, f"sha256:{sha256}")
    assert REAL.sources["ade20k_full"].url is None  # registration-gated


def test_mirror_replaces_every_host(tmp_path):
    local = with_mirror(REAL, str(tmp_path))
    remote = with_mirror(REAL, "https://lab.example/datasets/")
    for key, source in REAL.sources.items():
        assert local.sources[key].url == (tmp_path / source.filename).as_uri()
        assert remote.sources[key].url == f"https://lab.example/datasets/{source.filename}"
        assert local.sources[key].known_hash == source.known_hash
    assert with_mirror(REAL, None) is REAL


def test_gated_archive_without_a_path_explains_how_to_get_it(tmp_path):
    with pytest.raises(
        DataError, match=r"registered.*data\.ade20k_full_archive=/path/to/ADE20K_2021_17_01\.zip"
    ):
        fetch_source(REAL.sources["ade20k_full"], tmp_path / "raw", lock_path=tmp_path / "lock.json")
    with pytest.raises(DataError, match="data.ade20k_full_archive: no file at"):
        with_user_archive(REAL, str(tmp_path / "missing.zip"))


def test_user_archive_is_locked_at_first_use_and_verified_after(tmp_path):
    host = tmp_path / "host"
    generate(SyntheticConfig(val_images=1), host, datasets=["a847"])
    archive = host / "ADE20K_2021_17_01.zip"
    registry = with_user_archive(REAL, str(archive))
    lock = tmp_path / "lock.json"
    first = fetch_source(registry.sources["ade20k_full"], tmp_path / "raw", lock_path=lock, progressbar=False)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert first.verified_hash == f"sha256:{digest}"
    assert read_lock(lock)["ade20k_full"] == {
        "filename": archive.name,
        "sha256": digest,
        "size": archive.stat().st_size,
    }
    assert (
        fetch_source(registry.sources["ade20k_full"], tmp_path / "raw", lock_path=lock).verified_hash
        == first.verified_hash
    )
    first.path.unlink()
    archive.write_bytes(archive.read_bytes() + b"changed")
    with pytest.raises(DataError, match="ade20k_full .*hash"):
        fetch_source(registry.sources["ade20k_full"], tmp_path / "raw", lock_path=lock)
    assert not (tmp_path / "raw" / archive.name).exists()


def test_mirror_folder_fetch_locks_unpublished_hashes(tmp_path):
    host = tmp_path / "mirror"
    generate(SyntheticConfig(val_images=1, train_images=1), host, datasets=["coco_stuff"])
    source = with_mirror(REAL, str(host)).sources["cocostuff_stuffthingmaps"]
    assert source.known_hash is None
    fetched = fetch_source(source, tmp_path / "raw", lock_path=tmp_path / "lock.json")
    assert (
        read_lock(tmp_path / "lock.json")["cocostuff_stuffthingmaps"]["sha256"] == fetched.verified_hash[7:]
    )
    # a published hash is still enforced on a mirror's copy
    with pytest.raises(DataError, match="coco_train2017 .*hash"):
        fetch_source(
            with_mirror(REAL, str(host)).sources["coco_train2017"],
            tmp_path / "raw",
            lock_path=tmp_path / "lock.json",
        )


def test_synthetic_host_is_generated_once_and_deterministic(tmp_path):
    cfg = DataConfig(raw_root=str(tmp_path / "a"))
    first = registry_for(cfg)
    stamp = (tmp_path / "a" / "synthetic-host" / "train2017.zip").stat().st_mtime_ns
    assert registry_for(cfg) == first
    assert (
        tmp_path / "a" / "synthetic-host" / "train2017.zip"
    ).stat().st_mtime_ns == stamp  # not regenerated
    again = registry_for(DataConfig(raw_root=str(tmp_path / "b")))
    assert {k: s.known_hash for k, s in again.sources.items()} == {
        k: s.known_hash for k, s in first.sources.items()
    }
    other_seed = registry_for(DataConfig(raw_root=str(tmp_path / "c"), synthetic=SyntheticConfig(seed=1)))
    assert other_seed.sources["coco_train2017"].known_hash != first.sources["coco_train2017"].known_hash
    assert set(first.sources) == set(REAL.sources) and first.origin == "synthetic"


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    payload = b""
    honour_range = True
    requests: list = []

    def do_GET(self):
        requested = self.headers.get("Range")
        self.requests.append(requested)
        start = int(requested.removeprefix("bytes=").rstrip("-")) if requested and self.honour_range else 0
        body = self.payload[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("honour_range", [True, False])
def test_interrupted_http_download_resumes(tmp_path, honour_range):
    payload = bytes(range(256)) * 400
    handler = type(
        "Handler", (_RangeHandler,), {"payload": payload, "honour_range": honour_range, "requests": []}
    )
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        raw = tmp_path / "raw"
        raw.mkdir()
        (raw / "blob.bin.part").write_bytes(payload[:30000])  # what an interrupted run left
        url = f"http://127.0.0.1:{server.server_port}/blob.bin"
        source = Source("blob", "blob.bin", url, f"sha256:{hashlib.sha256(payload).hexdigest()}")
        fetched = fetch_source(source, raw, lock_path=tmp_path / "lock.json", progressbar=False)
    finally:
        server.shutdown()
        server.server_close()
    assert fetched.path.read_bytes() == payload
    assert handler.requests == ["bytes=30000-"]
    assert not (raw / "blob.bin.part").exists()


def _zip_with(name):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ok/file.txt", b"fine")
        zf.writestr(name, b"bad")
    return buf.getvalue()


def _tar_with(member: tarfile.TarInfo, data=b""):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    return buf.getvalue()


def _symlink(name, target):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


@pytest.mark.parametrize(
    "filename, data, member",
    [
        ("a.zip", _zip_with("../escape.txt"), "../escape.txt"),
        ("b.zip", _zip_with("/abs/escape.txt"), "/abs/escape.txt"),
        ("c.tar", _tar_with(tarfile.TarInfo("x/../../escape.txt"), b"bad"), "x/../../escape.txt"),
        ("d.tar", _tar_with(tarfile.TarInfo("/etc/escape.txt"), b"bad"), "/etc/escape.txt"),
        ("e.tar", _tar_with(_symlink("dir/link", "../../outside")), "dir/link"),
        ("f.tar", _tar_with(_symlink("link", "/etc/passwd")), "link"),
    ],
)
def test_unsafe_archive_members_are_refused(tmp_path, filename, data, member):
    archive = tmp_path / filename
    archive.write_bytes(data)
    with pytest.raises(DataError, match=f"refusing archive member '{member}'"):
        extract(archive, tmp_path / "out" / "deep", "sha256:x")
    assert not list((tmp_path / "out").rglob("*escape*")) and not list((tmp_path / "out").rglob("link"))
    assert list((tmp_path / "out" / "deep").iterdir()) == []


def test_extraction_is_reused_until_the_archive_changes(tmp_path):
    archive = tmp_path / "a.zip"
    archive.write_bytes(_zip_with("more/inner.txt"))
    target = extract(archive, tmp_path / "out", "sha256:one")
    (target / "reused.txt").write_bytes(b"a file the archive does not hold")
    assert extract(archive, tmp_path / "out", "sha256:one") == target
    assert (target / "reused.txt").is_file()  # not unpacked again
    extract(archive, tmp_path / "out", "sha256:two")
    assert not (target / "reused.txt").exists() and (target / "ok" / "file.txt").read_bytes() == b"fine"


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_a_damaged_extraction_is_reported_by_name_and_unpacked_again(tmp_path, damage):
    archive = tmp_path / "a.zip"
    archive.write_bytes(_zip_with("more/inner.txt"))
    target = extract(archive, tmp_path / "out", "sha256:one")
    member = target / "ok" / "file.txt"
    member.unlink() if damage == "delete" else member.write_bytes(b"fi")
    problem = "ok/file.txt is missing" if damage == "delete" else "ok/file.txt has 2 bytes, 4 when written"
    with pytest.warns(CorruptCacheWarning, match=f"extracted copy {target}: {problem}; removed, unpacking"):
        assert extract(archive, tmp_path / "out", "sha256:one") == target
    assert member.read_bytes() == b"fine"


@pytest.mark.parametrize("filename", ["t.zip", "t.tar.gz", "t.tar"])
def test_truncated_archives_fail_naming_the_archive(tmp_path, filename):
    host = tmp_path / "h"
    generate(SyntheticConfig(val_images=1), host, datasets=["pc459"])
    source = {
        "t.zip": "pascalcontext_val.txt",
        "t.tar.gz": "trainval.tar.gz",
        "t.tar": "VOCtrainval_03-May-2010.tar",
    }
    data = (host / source[filename]).read_bytes() if filename != "t.zip" else _zip_with("x.txt")
    archive = tmp_path / filename
    archive.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(DataError, match=rf"{filename}: truncated or corrupt archive"):
        extract(archive, tmp_path / "out", "sha256:x")
    assert list((tmp_path / "out").iterdir()) == []
