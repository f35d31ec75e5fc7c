"""Embedded container images (``[[containers]]``) from local ``oci:`` / ``oci-archive:`` / ``dir:`` sources.

With ``skopeo`` on the build host each image is copied into the additional image store
``/usr/lib/containers/storage`` (vfs driver) that CRI-O and podman read on the device, the layout
osbuild's ``org.osbuild.skopeo`` stage produces. Without skopeo the source is copied verbatim as an OCI
layout / ``dir:`` tree under ``/usr/share/containers/fieldshift/<name>`` for loading at first boot.
Remote sources (``docker://``) are refused: builds must not depend on the network.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from builder.blueprint.models import Container
from builder.stages import StageError
from greenboot.external import ToolError, run

STORE = "usr/lib/containers/storage"
FALLBACK = "usr/share/containers/fieldshift"


@dataclass(frozen=True)
class ContainersOptions:
    """Containers in blueprint order; relative source paths resolve against ``base_dir``."""

    containers: tuple[Container, ...] = ()
    base_dir: Path = Path(".")
    use_skopeo: bool = True


def _split(source: str, where: str) -> tuple[str, str, str]:
    transport, _, rest = source.partition(":")
    if transport not in ("oci", "oci-archive", "dir"):
        raise StageError(
            f'{where}.source: "{source}" is not a local source; use oci:PATH[:TAG], oci-archive:PATH or dir:PATH'
        )
    path, _, tag = rest.partition(":") if transport != "dir" else (rest, "", "")
    return transport, path, tag


def _store_name(c: Container, path: Path, tag: str) -> str:
    name = c.name or f"localhost/{path.name}:{tag or 'latest'}"
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def apply(root: Path, options: ContainersOptions) -> None:
    """Copy each container image into the tree."""
    skopeo = options.use_skopeo and shutil.which("skopeo") is not None
    for i, c in enumerate(options.containers):
        where = f"containers[{i}]"
        transport, raw, tag = _split(c.source, where)
        path = (options.base_dir / raw).resolve()
        if not path.exists():
            raise StageError(f'{where}.source: {path} does not exist')
        name = _store_name(c, path, tag)
        if skopeo:
            store = root / STORE
            store.mkdir(parents=True, exist_ok=True)
            runroot = root / "run/fieldshift-containers"
            dest = f"containers-storage:[vfs@{store}+{runroot}]{name}"
            src = f"{transport}:{path}" + (f":{tag}" if tag else "")
            try:
                run(["skopeo", "copy", "--quiet", "--preserve-digests", src, dest])
            except ToolError as err:
                raise StageError(f"{where}: skopeo could not copy {c.source}: {err.stderr.strip()}") from err
            finally:
                shutil.rmtree(runroot, ignore_errors=True)
            for lock in store.rglob("*.lock"):
                lock.unlink()
            continue
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
        dest_dir = root / FALLBACK / safe
        if dest_dir.exists():
            shutil.rmtree(dest_dir)
        dest_dir.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            shutil.copytree(path, dest_dir, symlinks=True)
        else:
            dest_dir.mkdir()
            shutil.copy2(path, dest_dir / path.name)
        (dest_dir / "fieldshift-source").write_text(f"{transport} {name}\n")
        os.chmod(dest_dir, 0o755)
