"""The README's device story: build, publish, boot a device, update it, break it, watch it roll itself back.

``python -m tests.vm.story [WORKDIR]`` drives the same lab as the VM tier (debian-12 image from our
builder, releases from our publish, QEMU TCG) and narrates each step with its wall time, then prints a
summary. About ten minutes on two cores (plus three minutes of mmdebstrap on a machine's first run).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from tests.vm.lab import Device, Lab, greenboot_verdict

SETTLE = 900.0


def _say(started: float, text: str) -> None:
    print(f"[{time.monotonic() - started:6.1f}s] {text}", flush=True)


def story(workdir: Path) -> int:
    started = time.monotonic()
    lab = Lab(workdir, boot_attempts=2)
    summary: list[str] = []
    dev: Device | None = None
    try:
        _say(started, "building v1.0.0 as a bootable qcow2 disk (mmdebstrap, ostree commit, GPT/ESP/GRUB)")
        lab.build("1.0.0", image=True)
        _say(started, f"  disk: {lab.image}")
        _say(started, "building v2.0.0 (healthy) and v3.0.0 (its health check fails) as commits")
        lab.build("2.0.0")
        lab.build("3.0.0", verdict="red")
        _say(started, f"publishing 1.0.0 and 2.0.0 as signed releases, served at {lab.server.url}/story")
        lab.publish("story", "1.0.0")
        lab.publish("story", "2.0.0")

        dev = lab.device("story")
        _say(started, "powering on the device (QEMU, TCG, OVMF)")
        dev.vm.start()
        dev.settle(lambda d: greenboot_verdict(d) == "green", SETTLE)
        _say(started, f"  device is up: v{dev.agent()['booted']['version']}, greenboot says green")
        dev.follow(lab.url("story"))

        t = time.monotonic()
        _say(started, "the agent checks the catalog, pulls the delta, stages v2.0.0 and reboots")
        before = dev.boots()
        dev.sh("systemd-run --unit=story-update --collect fieldshift-agent update")
        dev.settle(lambda d: d.boots() > before and d.agent()["booted"]["version"] == "2.0.0"
                   and greenboot_verdict(d) == "green", SETTLE)
        summary.append(f"update 1.0.0 -> 2.0.0: green on the new version after {time.monotonic() - t:.0f} s")
        _say(started, "  " + summary[-1])

        dev.sh("mkdir -p /var/lib/fieldshift-demo && date > /var/lib/fieldshift-demo/precious.txt")
        precious = dev.sh("sha256sum /var/lib/fieldshift-demo/precious.txt").split()[0]
        _say(started, "publishing 3.0.0, whose required health check fails on every boot")
        lab.publish("story", "3.0.0")
        t = time.monotonic()
        before = dev.boots()
        dev.sh("systemd-run --unit=story-break --collect fieldshift-agent update")
        bad = lab.commits["3.0.0"]
        dev.settle(lambda d: d.boots() > before and d.agent()["booted"]["version"] == "2.0.0"
                   and bad in d.agent()["denylist"] and greenboot_verdict(d) == "green", SETTLE)
        boots = dev.boots() - before
        summary.append(f"bad update 3.0.0: {boots} boots, GRUB fell back, rollback made permanent, "
                       f"back to green on 2.0.0 after {time.monotonic() - t:.0f} s")
        _say(started, "  " + summary[-1])
        same = dev.sh("sha256sum /var/lib/fieldshift-demo/precious.txt").split()[0] == precious
        summary.append(f"protected data under /var/lib/fieldshift-demo identical after the rollback: {same}")
        summary.append("3.0.0 is denylisted on the device: it will not be tried again")
        gb = dev.greenboot()
        for b in gb["boots"][-(boots + 1):]:
            summary.append(f"  boot report: v{b['version']} {b['verdict']}"
                           + (f" (failed: {', '.join(b['failed_required'])})" if b["failed_required"] else "")
                           + (" [fallback boot]" if b["fallback"] else ""))
    finally:
        if dev is not None:
            dev.stop()
        lab.close()
    print("\n== summary")
    for line in summary:
        print(line)
    print(f"total {time.monotonic() - started:.0f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args:
        Path(args[0]).mkdir(parents=True, exist_ok=True)
        return story(Path(args[0]))
    with tempfile.TemporaryDirectory(prefix="fieldshift-story-", dir="/var/tmp") as tmp:
        return story(Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
