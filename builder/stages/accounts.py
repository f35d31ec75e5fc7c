"""The tree's account databases: passwd, group, shadow and gshadow, read and written as text.

Lookups also see ``/usr/lib/passwd`` and ``/usr/lib/group`` (nss-altfiles, where ostree prep moves
system accounts), so a tree that already went through prep resolves the same names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class PasswdEntry:
    """One ``/etc/passwd`` line."""

    name: str
    uid: int
    gid: int
    gecos: str = ""
    home: str = "/"
    shell: str = "/sbin/nologin"
    password: str = "x"

    def line(self) -> str:
        return f"{self.name}:{self.password}:{self.uid}:{self.gid}:{self.gecos}:{self.home}:{self.shell}"

    @classmethod
    def parse(cls, line: str) -> PasswdEntry:
        f = (line.split(":") + [""] * 7)[:7]
        return cls(f[0], int(f[2] or 0), int(f[3] or 0), f[4], f[5], f[6], f[1])


@dataclass
class GroupEntry:
    """One ``/etc/group`` line."""

    name: str
    gid: int
    members: list[str] = field(default_factory=list)
    password: str = "x"

    def line(self) -> str:
        return f"{self.name}:{self.password}:{self.gid}:{','.join(self.members)}"

    @classmethod
    def parse(cls, line: str) -> GroupEntry:
        f = (line.split(":") + [""] * 4)[:4]
        return cls(f[0], int(f[2] or 0), [m for m in f[3].split(",") if m], f[1])


def _write(path: Path, text: str, mode: int) -> None:
    # A build tree is scratch until ostree commits (and syncs) it: no per-file fsync here.
    path.write_text(text)
    os.chmod(path, mode)


def _lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


@dataclass
class Accounts:
    """Mutable view of a tree's account files; :meth:`save` writes them back (shadow files mode 0000)."""

    root: Path
    passwd: list[PasswdEntry]
    group: list[GroupEntry]
    shadow: dict[str, str]  # name -> the rest of the shadow line after the name
    gshadow: dict[str, str]
    lib_passwd: list[PasswdEntry]
    lib_group: list[GroupEntry]

    @classmethod
    def load(cls, root: Path) -> Accounts:
        etc = root / "etc"
        return cls(
            root=root,
            passwd=[PasswdEntry.parse(x) for x in _lines(etc / "passwd")],
            group=[GroupEntry.parse(x) for x in _lines(etc / "group")],
            shadow={x.split(":", 1)[0]: x.split(":", 1)[1] for x in _lines(etc / "shadow") if ":" in x},
            gshadow={x.split(":", 1)[0]: x.split(":", 1)[1] for x in _lines(etc / "gshadow") if ":" in x},
            lib_passwd=[PasswdEntry.parse(x) for x in _lines(root / "usr/lib/passwd")],
            lib_group=[GroupEntry.parse(x) for x in _lines(root / "usr/lib/group")],
        )

    def user(self, name: str) -> PasswdEntry | None:
        return next((u for u in self.passwd + self.lib_passwd if u.name == name), None)

    def group_entry(self, name: str) -> GroupEntry | None:
        return next((g for g in self.group + self.lib_group if g.name == name), None)

    def uid_of(self, owner: str | int) -> int | None:
        if isinstance(owner, int) or str(owner).isdigit():
            return int(owner)
        entry = self.user(str(owner))
        return entry.uid if entry else None

    def gid_of(self, owner: str | int) -> int | None:
        if isinstance(owner, int) or str(owner).isdigit():
            return int(owner)
        entry = self.group_entry(str(owner))
        return entry.gid if entry else None

    def free_id(self, start: int = 1000, *, for_group: bool = False, also_free_in: str = "") -> int:
        """Lowest id >= ``start`` used by no user (or group); ``also_free_in`` = "group" wants both free."""
        used_u = {u.uid for u in self.passwd + self.lib_passwd}
        used_g = {g.gid for g in self.group + self.lib_group}
        used = used_g if for_group else used_u
        if also_free_in == "group":
            used = used | used_g
        n = start
        while n in used:
            n += 1
        return n

    def save(self) -> None:
        etc = self.root / "etc"
        _write(etc / "passwd", "".join(e.line() + "\n" for e in self.passwd), 0o644)
        _write(etc / "group", "".join(e.line() + "\n" for e in self.group), 0o644)
        names = [e.name for e in self.passwd]
        _write(etc / "shadow", "".join(f"{n}:{self.shadow.get(n, '!!:::::::')}\n" for n in names), 0)
        gnames = [e.name for e in self.group]
        _write(etc / "gshadow", "".join(f"{n}:{self.gshadow.get(n, '!::')}\n" for n in gnames), 0)
