"""The shared static HTTP server answers like a plain web server and logs every byte it sends."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.httpserve import StaticServer


@pytest.fixture()
def served(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "data.bin").write_bytes(bytes(range(256)) * 40)  # 10240 bytes
    with StaticServer(tmp_path) as server:
        yield server


def test_get_is_logged_with_status_and_body_bytes(served: StaticServer) -> None:
    resp = requests.get(f"{served.url}/sub/data.bin", timeout=10)
    assert resp.status_code == 200 and len(resp.content) == 10240
    [access] = served.log
    assert (access.method, access.path, access.status, access.body_bytes) == ("GET", "/sub/data.bin", 200, 10240)
    assert access.header_bytes > 50


def test_range_request_returns_only_the_asked_bytes(served: StaticServer) -> None:
    resp = requests.get(f"{served.url}/sub/data.bin", headers={"Range": "bytes=100-199"}, timeout=10)
    assert resp.status_code == 206
    assert resp.content == (bytes(range(256)) * 40)[100:200]
    assert resp.headers["Content-Range"] == "bytes 100-199/10240"
    tail = requests.get(f"{served.url}/sub/data.bin", headers={"Range": "bytes=-10"}, timeout=10)
    assert len(tail.content) == 10
    bad = requests.get(f"{served.url}/sub/data.bin", headers={"Range": "bytes=99999-"}, timeout=10)
    assert bad.status_code == 416
    assert [a.body_bytes for a in served.log] == [100, 10, 0]


def test_unchanged_file_is_answered_304_by_etag_and_by_date(served: StaticServer) -> None:
    first = requests.get(f"{served.url}/sub/data.bin", timeout=10)
    again = requests.get(f"{served.url}/sub/data.bin", headers={"If-None-Match": first.headers["ETag"]}, timeout=10)
    assert again.status_code == 304 and again.content == b""
    dated = requests.get(
        f"{served.url}/sub/data.bin", headers={"If-Modified-Since": first.headers["Last-Modified"]}, timeout=10
    )
    assert dated.status_code == 304
    assert served.log[1].total_bytes < 300


def test_changed_file_gets_a_new_etag(served: StaticServer) -> None:
    etag = requests.get(f"{served.url}/sub/data.bin", timeout=10).headers["ETag"]
    (served.root / "sub" / "data.bin").write_bytes(b"new content")
    resp = requests.get(f"{served.url}/sub/data.bin", headers={"If-None-Match": etag}, timeout=10)
    assert resp.status_code == 200 and resp.content == b"new content"


def test_paths_outside_the_root_and_missing_files_are_404(served: StaticServer) -> None:
    assert requests.get(f"{served.url}/../../etc/passwd", timeout=10).status_code == 404
    assert requests.get(f"{served.url}/sub/none", timeout=10).status_code == 404
    assert requests.get(f"{served.url}/sub", timeout=10).status_code == 404


def test_cut_drops_the_connection_after_n_bytes_once(served: StaticServer) -> None:
    served.cut("/sub/data.bin", 1000)
    with pytest.raises(requests.exceptions.RequestException):
        r = requests.get(f"{served.url}/sub/data.bin", timeout=10)
        r.raise_for_status()
        assert len(r.content) == 10240  # a truncated body must not look complete
    assert served.log[-1].body_bytes == 1000
    assert len(requests.get(f"{served.url}/sub/data.bin", timeout=10).content) == 10240


def test_fail_answers_one_request_with_an_error(served: StaticServer) -> None:
    served.fail("/sub/data.bin", 503)
    assert requests.get(f"{served.url}/sub/data.bin", timeout=10).status_code == 503
    assert requests.get(f"{served.url}/sub/data.bin", timeout=10).status_code == 200
