"""Snapshots, journal and service notifications, the lock: device I/O on real files and sockets."""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

import pytest

from updater.journal import MESSAGE_IDS, Journal
from updater.lock import AgentLock, AlreadyRunning
from updater.notify import Notifier
from updater.snapshots import NotEnoughSpace, SnapshotStore


def _tree(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() and not p.is_symlink() else os.readlink(p)
                                       if p.is_symlink() else None, p.lstat().st_mode)
            for p in sorted(root.rglob("*"))}


def test_snapshot_restores_files_modes_and_links_byte_for_byte(tmp_path: Path) -> None:
    data = tmp_path / "var/lib/microshift"
    (data / "etcd").mkdir(parents=True)
    (data / "etcd/db").write_bytes(os.urandom(4096))
    (data / "key.pem").write_text("secret")
    (data / "key.pem").chmod(0o600)
    (data / "current").symlink_to("etcd/db")
    before = _tree(data)
    store = SnapshotStore(tmp_path / "snapshots")
    store.take("abc.0", [data, tmp_path / "absent"], min_free_bytes=0)
    (data / "etcd/db").write_bytes(b"migrated")
    (data / "new").write_text("x")
    (tmp_path / "absent").write_text("created after the snapshot")
    store.restore("abc.0")
    assert _tree(data) == before
    assert not (tmp_path / "absent").exists()
    store.restore("abc.0")  # idempotent
    assert _tree(data) == before


def test_snapshot_refuses_when_space_is_short_and_says_how_much(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "blob").write_bytes(b"x" * 1024)
    store = SnapshotStore(tmp_path / "snapshots")
    with pytest.raises(NotEnoughSpace) as err:
        store.take("abc.0", [data], min_free_bytes=1 << 60)
    assert "need" in err.value.message and "MiB" in err.value.message
    assert store.ids() == []


def test_journal_speaks_the_native_protocol_with_a_stable_message_id(tmp_path: Path) -> None:
    path = tmp_path / "journal.socket"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        Journal(path).send("rolled_back", "line one\nline two", priority="err", version="2")
        data = sock.recv(65536)
    assert b"MESSAGE_ID=" + MESSAGE_IDS["rolled_back"].encode() + b"\n" in data
    assert b"PRIORITY=3\n" in data and b"FIELDSHIFT_VERSION=2\n" in data
    text = b"line one\nline two"
    assert b"MESSAGE\n" + struct.pack("<Q", len(text)) + text + b"\n" in data


def test_journal_falls_back_to_stderr_without_a_socket(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    Journal(tmp_path / "none").send("check_failed", "server gone")
    assert "server gone" in capsys.readouterr().err


def test_notifier_sends_ready_and_watchdog_datagrams(tmp_path: Path) -> None:
    path = tmp_path / "notify.socket"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        n = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "30000000"})
        n.ready("phase idle")
        n.watchdog()
        assert sock.recv(1024) == b"READY=1\nSTATUS=phase idle\n"
        assert sock.recv(1024) == b"WATCHDOG=1\n"
    assert n.watchdog_seconds == 30.0
    assert Notifier({}).send(READY="1") is False


def test_second_lock_holder_is_refused(tmp_path: Path) -> None:
    with AgentLock(tmp_path), pytest.raises(AlreadyRunning, match=f"pid {os.getpid()}"):
        AgentLock(tmp_path).acquire()
    AgentLock(tmp_path).acquire().release()
