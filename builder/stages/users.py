"""Users, groups and SSH keys: entries in passwd/shadow/group/gshadow, home dirs, authorized_keys.

Written directly into the tree's ``/etc`` files (osbuild's ``org.osbuild.users`` and
``org.osbuild.groups`` stages run ``useradd`` in the target instead). Ids not given are the lowest
free ones from 1000 up; a user without an explicit ``gid`` gets a private group of the same name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from builder.blueprint.models import Group, User
from builder.stages import StageError, inside
from builder.stages.accounts import Accounts, GroupEntry, PasswdEntry


@dataclass(frozen=True)
class UsersOptions:
    """Groups first (users may join them), then users; ``where`` prefixes error key paths."""

    users: tuple[User, ...] = ()
    groups: tuple[Group, ...] = ()
    where: str = "customizations"


def _add_group(acc: Accounts, group: Group, where: str) -> GroupEntry:
    existing = acc.group_entry(group.name)
    if existing is not None:
        if group.gid is not None and existing.gid != group.gid:
            raise StageError(f'{where}: group "{group.name}" already exists with gid {existing.gid}, not {group.gid}')
        return existing
    gid = group.gid if group.gid is not None else acc.free_id(1000, for_group=True)
    clash = next((g for g in acc.group + acc.lib_group if g.gid == gid), None)
    if clash is not None:
        raise StageError(f'{where}: gid {gid} of group "{group.name}" is already used by group "{clash.name}"')
    entry = GroupEntry(group.name, gid)
    acc.group.append(entry)
    acc.gshadow[group.name] = "!::"
    return entry


def _add_user(acc: Accounts, root: Path, user: User, where: str) -> None:
    entry = acc.user(user.name)
    if entry is None:
        if user.uid is not None:
            uid = user.uid
            clash = next((u for u in acc.passwd + acc.lib_passwd if u.uid == uid), None)
            if clash is not None:
                raise StageError(f'{where}.uid: uid {uid} of user "{user.name}" is already used by "{clash.name}"')
        else:
            uid = acc.free_id(1000, also_free_in="group")
        if user.gid is not None:
            gid = user.gid
            if not any(g.gid == gid for g in acc.group + acc.lib_group):
                raise StageError(f'{where}.gid: no group has gid {gid}; add it under [[customizations.group]]')
        else:
            private = acc.group_entry(user.name)
            if private is None:
                want = None if any(g.gid == uid for g in acc.group + acc.lib_group) else uid
                private = _add_group(acc, Group(user.name, want), where)
            gid = private.gid
        entry = PasswdEntry(user.name, uid, gid, user.description or "", user.home or f"/home/{user.name}",
                            user.shell or "/bin/bash")
        acc.passwd.append(entry)
        acc.shadow[user.name] = "!!:::::::"
    elif entry not in acc.passwd:
        raise StageError(f'{where}.name: "{user.name}" is a system account from the packages and cannot be changed')
    else:
        if user.description is not None:
            entry.gecos = user.description
        if user.home:
            entry.home = user.home
        if user.shell:
            entry.shell = user.shell
    if user.password is not None:
        rest = acc.shadow.get(user.name, "!!:::::::").split(":")
        rest[0] = user.password
        if user.force_password_reset:
            rest[1] = "0"
        if user.expiredate is not None:
            rest[6] = str(user.expiredate)
        acc.shadow[user.name] = ":".join(rest)
    for i, gname in enumerate(user.groups):
        group = next((g for g in acc.group if g.name == gname), None)
        if group is None:
            raise StageError(f'{where}.groups[{i}]: group "{gname}" does not exist in the image')
        if user.name not in group.members:
            group.members.append(user.name)
    home = inside(root, entry.home, f"{where}.home")
    if entry.home not in ("/", "") and not home.exists():
        home.mkdir(parents=True, mode=0o700)
        os.chmod(home, 0o700)
        os.lchown(home, entry.uid, entry.gid)
    if user.key:
        ssh = home / ".ssh"
        ssh.mkdir(mode=0o700, exist_ok=True)
        os.chmod(ssh, 0o700)
        os.lchown(ssh, entry.uid, entry.gid)
        keys = ssh / "authorized_keys"
        old = keys.read_text() if keys.exists() else ""
        new = old + "".join(k.strip() + "\n" for k in user.key.splitlines() if k.strip() and k.strip() not in old)
        keys.write_text(new)
        os.chmod(keys, 0o600)
        os.lchown(keys, entry.uid, entry.gid)


def apply(root: Path, options: UsersOptions) -> None:
    """Create or update the groups and users of ``options`` in the tree at ``root``."""
    if not options.users and not options.groups:
        return
    acc = Accounts.load(root)
    for i, group in enumerate(options.groups):
        _add_group(acc, group, f"{options.where}.group[{i}]")
    for i, user in enumerate(options.users):
        _add_user(acc, root, user, f"{options.where}.user[{i}]")
    acc.save()
