"""UID/GID stability: users and groups of the parent commit keep their ids in the new tree.

Mirrors osbuild's ``org.osbuild.ostree.passwd`` stage: the parent's account entries (``/usr/etc`` and
``/usr/lib`` passwd/group) are merged into the tree's ``/etc`` files *before* system users and
blueprint users are created, so the id allocators see them as taken and existing names keep their
ids. Entries whose name or id is already taken in the tree are left alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from builder.stages.accounts import Accounts, GroupEntry, PasswdEntry

log = logging.getLogger("fieldshift.compose")


@dataclass(frozen=True)
class PasswdPreserveOptions:
    """The parent commit's passwd and group lines (``/usr/etc`` first, then ``/usr/lib``)."""

    passwd: tuple[str, ...] = ()
    group: tuple[str, ...] = ()


def apply(root: Path, options: PasswdPreserveOptions) -> None:
    """Merge the parent's entries into the tree's ``/etc/passwd`` and ``/etc/group``."""
    if not options.passwd and not options.group:
        return
    acc = Accounts.load(root)
    for line in options.group:
        g = GroupEntry.parse(line)
        if acc.group_entry(g.name) is None and not any(x.gid == g.gid for x in acc.group + acc.lib_group):
            acc.group.append(GroupEntry(g.name, g.gid))
            acc.gshadow.setdefault(g.name, "!::")
        elif (have := acc.group_entry(g.name)) is not None and have.gid != g.gid:
            log.warning("group %s has gid %d in the parent but %d in the packages", g.name, g.gid, have.gid)
    for line in options.passwd:
        u = PasswdEntry.parse(line)
        if acc.user(u.name) is None and not any(x.uid == u.uid for x in acc.passwd + acc.lib_passwd):
            acc.passwd.append(u)
            acc.shadow.setdefault(u.name, "!!:::::::")
    acc.save()
