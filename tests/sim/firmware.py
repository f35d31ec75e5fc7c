"""A simulated GRUB: applies GRUB's boot-counting rules to a real grubenv and "boots" a real entry.

Stands in for the one thing tests cannot do, a reboot. Everything it touches is real: it reads and
writes the grubenv with the real ``grub-editenv`` (as GRUB's ``load_env``/``save_env`` would), and
picks the entry from the real BLS entries ostree wrote in ``<root>/boot/loader/entries`` (Fedora's
``blscfg``) or from a ``grub.cfg`` written by :func:`greenboot.grubmenu.write_menu` (Debian).

The rules, per boot, are those of rhboot/grub2 ``util/grub.d/08_fallback_counting.in`` followed by
``10_reset_boot_success.in`` (and of our ladder fragment for GRUBs without ``decrement``):

1. if ``boot_counter`` is set and ``boot_success`` is ``0``: when the counter is ``0`` or ``-1``
   (or not a number) boot entry 1 and store ``boot_counter=-1``, else store ``boot_counter - 1``;
2. store ``boot_success=0``;
3. boot entry ``default`` (0 unless step 1 chose 1; entry 0 when there is no entry 1).

"Booting" writes what the kernel would show the booted system under ``<root>``:
``proc/cmdline`` (with the entry's ``ostree=`` argument), a fresh ``proc/sys/kernel/random/boot_id``
and ``proc/1/root``, a symlink to the deployment that ostree-prepare-root would mount as ``/`` (it
keeps naming the booted deployment after ostree rewrites ``ostree/boot.N``).

With ``engine="grub-emu"`` (only with ``menu``) the counting is not simulated at all: real GRUB
(``grub-emu``, Debian's GRUB 2.06 without ``increment``/``blscfg``) sources the generated grub.cfg
with the grubenv on a FAT disk image (made with mtools), exactly as at boot, and reports ``$default``;
the grubenv it saved is copied back. :func:`run_grub` runs any grub script that way.

Example::

    fw = Firmware(root)                  # root is a sysroot from tests.sim.sysroot
    boot = fw.boot()
    boot.index, boot.version, boot.boot_counter   # 0, "2", "2"
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

GRUBENV_CANDIDATES = ("boot/grub2/grubenv", "boot/grub/grubenv")


@dataclass(frozen=True)
class BootEntry:
    """One menu entry: its title, kernel, initramfs and kernel arguments."""

    title: str
    linux: str
    initrd: str
    options: str
    version: str = ""
    source: str = ""

    @property
    def ostree_path(self) -> str:
        m = re.search(r"(?:^|\s)ostree=(\S+)", self.options)
        return m.group(1) if m else ""


@dataclass(frozen=True)
class Boot:
    """What one simulated boot did."""

    index: int
    entry: BootEntry
    fell_back: bool
    boot_counter: Optional[str]  # grubenv value the booted system sees
    boot_success: Optional[str]
    boot_id: str
    deployment: str  # "<checksum>.<serial>" of the booted deployment
    version: str  # VERSION_ID of the booted deployment


def editenv_list(grubenv: Path) -> Dict[str, str]:
    """``grub-editenv FILE list`` as a dict."""
    out = subprocess.run(["grub-editenv", str(grubenv), "list"], capture_output=True, text=True, check=True).stdout
    values = {}
    for line in out.splitlines():
        if "=" in line:
            key, _, value = line.partition("=")
            values[key] = value
    return values


def editenv(grubenv: Path, *args: str) -> None:
    """``grub-editenv FILE ARGS...`` (set / unset / create)."""
    subprocess.run(["grub-editenv", str(grubenv), *args], capture_output=True, text=True, check=True)


def parse_bls(path: Path) -> BootEntry:
    fields: Dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, _, value = line.strip().partition(" ")
        if key and not key.startswith("#"):
            fields[key] = value.strip()
    return BootEntry(
        title=fields.get("title", path.stem),
        linux=fields.get("linux", ""),
        initrd=fields.get("initrd", ""),
        options=fields.get("options", ""),
        version=fields.get("version", ""),
        source=path.name,
    )


def bls_entries(root: Path) -> List[BootEntry]:
    """BLS entries in blscfg's menu order: highest ``version`` first, then file name descending."""
    entries_dir = root / "boot" / "loader" / "entries"
    entries = [parse_bls(p) for p in sorted(entries_dir.glob("*.conf"))] if entries_dir.is_dir() else []

    def key(entry: BootEntry) -> tuple:
        try:
            return (1, int(entry.version), entry.source)
        except ValueError:
            return (0, 0, entry.source)

    return sorted(entries, key=key, reverse=True)


def menu_entries(grub_cfg: Path) -> List[BootEntry]:
    """The ``menuentry`` blocks of a grub.cfg, in order (``linux``/``initrd`` lines inside each)."""
    entries = []
    title = None
    linux = initrd = options = ""
    for raw in grub_cfg.read_text().splitlines():
        line = raw.strip()
        m = re.match(r"menuentry\s+'([^']*)'", line)
        if m:
            title, linux, initrd, options = m.group(1), "", "", ""
            continue
        if title is None:
            continue
        if line.startswith("linux "):
            parts = line.split()
            linux, options = parts[1], " ".join(parts[2:])
        elif line.startswith("initrd "):
            initrd = line.split()[1]
        elif line == "}":
            entries.append(BootEntry(title, linux, initrd, options, source=str(grub_cfg)))
            title = None
    return entries


def _mtools(*args: str) -> None:
    subprocess.run(list(args), capture_output=True, text=True, check=True)


def run_grub(script: str, grubenv: Optional[Path] = None, *, echo: str = "") -> Dict[str, str]:
    """Run ``script`` in real GRUB (grub-emu) with ``$prefix`` on a FAT disk holding ``grubenv``.

    Afterwards GRUB runs ``echo FWRESULT <echo>``; the words ``name=value`` of that line are returned.
    The grubenv GRUB saved is copied back to ``grubenv``. Raises RuntimeError when GRUB reports an error.
    """
    with tempfile.TemporaryDirectory(prefix="grub-emu-") as tmp:
        work = Path(tmp)
        disk = work / "disk.img"
        with disk.open("wb") as fh:
            fh.truncate(2 * 1024 * 1024)
        _mtools("mformat", "-i", str(disk), "::")
        (work / "script.cfg").write_text(script)
        _mtools("mcopy", "-i", str(disk), str(work / "script.cfg"), "::script.cfg")
        if grubenv is not None and grubenv.is_file():
            _mtools("mcopy", "-i", str(disk), str(grubenv), "::grubenv")
        (work / "device.map").write_text(f"(hd0)\t{disk}\n")
        (work / "prefix").mkdir()
        commands = f"set prefix=(hd0)\nset root=(hd0)\nsource (hd0)/script.cfg\necho FWRESULT {echo}\nhalt\n"
        proc = subprocess.run(
            ["grub-emu", "-d", str(work / "prefix"), "-m", str(work / "device.map")],
            input=commands, capture_output=True, text=True, timeout=60,
        )
        output = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]|\r", "", proc.stdout + proc.stderr)
        errors = [ln for ln in output.splitlines() if "error:" in ln and "insmod" not in ln and "file `" not in ln]
        if errors:
            raise RuntimeError("grub-emu: " + "; ".join(errors))
        result_lines = [ln for ln in output.splitlines() if ln.startswith("FWRESULT")]
        if not result_lines:
            raise RuntimeError(f"grub-emu did not finish the script: {output[-500:]}")
        if grubenv is not None and grubenv.is_file():
            _mtools("mcopy", "-o", "-i", str(disk), "::grubenv", str(grubenv))
        return dict(w.split("=", 1) for w in result_lines[-1].split()[1:] if "=" in w)


class Firmware:
    """GRUB for one root; ``menu`` switches from BLS entries to a generated grub.cfg."""

    def __init__(
        self,
        root: Path,
        *,
        grubenv: Optional[Path] = None,
        menu: Optional[Path] = None,
        engine: str = "python",
    ) -> None:
        if engine not in ("python", "grub-emu") or (engine == "grub-emu" and menu is None):
            raise ValueError("engine is 'python', or 'grub-emu' together with a generated menu")
        self.root = Path(root)
        self.menu = menu
        self.engine = engine
        if grubenv is None:
            grubenv = next(
                (self.root / rel for rel in GRUBENV_CANDIDATES if (self.root / rel).is_file()),
                self.root / GRUBENV_CANDIDATES[0],
            )
        self.grubenv = grubenv
        self.history: List[Boot] = []

    def entries(self) -> List[BootEntry]:
        return menu_entries(self.menu) if self.menu is not None else bls_entries(self.root)

    def _count(self) -> int:
        """Apply the counting rules to the grubenv; return the default entry index."""
        if self.engine == "grub-emu":
            assert self.menu is not None
            result = run_grub(self.menu.read_text(), self.grubenv, echo="default=${default}")
            return int(result.get("default") or 0)
        if not self.grubenv.is_file():
            return 0
        env = editenv_list(self.grubenv)
        default = 0
        counter = env.get("boot_counter")
        if counter is not None and counter != "" and env.get("boot_success") == "0":
            if counter in ("0", "-1") or not counter.isdigit():
                default = 1
                editenv(self.grubenv, "set", "boot_counter=-1")
            else:
                editenv(self.grubenv, "set", f"boot_counter={int(counter) - 1}")
        editenv(self.grubenv, "set", "boot_success=0")
        return default

    def boot(self) -> Boot:
        """Run GRUB's counting, pick the entry, and write the booted system's cmdline and boot id."""
        entries = self.entries()
        if not entries:
            raise RuntimeError(f"no boot entries under {self.root}")
        default = self._count()
        index = default if default < len(entries) else 0
        entry = entries[index]
        proc = self.root / "proc"
        (proc / "sys" / "kernel" / "random").mkdir(parents=True, exist_ok=True)
        (proc / "cmdline").write_text(f"BOOT_IMAGE=({entry.linux}) {entry.options}\n")
        boot_id = str(uuid.uuid4())
        (proc / "sys" / "kernel" / "random" / "boot_id").write_text(boot_id + "\n")
        env = editenv_list(self.grubenv) if self.grubenv.is_file() else {}
        deployment, version = self._deployment(entry)
        pid1_root = proc / "1" / "root"
        pid1_root.parent.mkdir(parents=True, exist_ok=True)
        if pid1_root.is_symlink():
            pid1_root.unlink()
        if deployment:
            pid1_root.symlink_to((self.root / entry.ostree_path.lstrip("/")).resolve())
        boot = Boot(
            index=index,
            entry=entry,
            fell_back=index == 1,
            boot_counter=env.get("boot_counter"),
            boot_success=env.get("boot_success"),
            boot_id=boot_id,
            deployment=deployment,
            version=version,
        )
        self.history.append(boot)
        return boot

    def _deployment(self, entry: BootEntry) -> tuple:
        path = entry.ostree_path
        if not path:
            return "", ""
        link = self.root / path.lstrip("/")
        target = link.resolve()
        version = ""
        os_release = target / "usr" / "lib" / "os-release"
        if os_release.is_file():
            m = re.search(r'^VERSION_ID="?([^"\n]*)"?', os_release.read_text(), re.M)
            version = m.group(1) if m else ""
        return target.name, version
