"""Blueprints shaped like osbuild's test blueprints and MicroShift's templates validate unchanged."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from builder.blueprint import load

DATA = Path(__file__).resolve().parent / "data"
SHAPES = sorted(p for p in DATA.glob("*.toml") if p.name != "property.toml")


def image_type_of(path: Path) -> str:
    match = re.search(r"^# image-type: (\S+)$", path.read_text(), re.MULTILINE)
    assert match, f"{path.name} names no image type"
    return match.group(1)


def test_there_is_a_shape_for_every_edge_image_type() -> None:
    assert {image_type_of(p) for p in SHAPES} >= {
        "edge-commit", "edge-container", "edge-raw-image", "edge-installer", "edge-simplified-installer"
    }  # fmt: skip


@pytest.mark.parametrize("path", SHAPES, ids=[p.stem for p in SHAPES])
def test_upstream_shaped_blueprint_validates(path: Path) -> None:
    bp = load(path, image_type=image_type_of(path))
    assert bp.name and bp.image_type == image_type_of(path)
    for user in bp.customizations.user:
        assert user.password is None or user.password.startswith("$6$")
        assert user.home is None or not user.home.endswith("/")


def test_microshift_template_distro_spelling_maps_to_our_distro() -> None:
    assert load(DATA / "microshift-image-blueprint.toml").distro == "rhel-9"


def test_the_bundled_example_validates_for_every_commit_building_type() -> None:
    example = DATA.parents[2] / "blueprints" / "microshift-edge.toml.j2"
    for kind in ("edge-commit", "edge-container", "raw", "qcow2"):
        bp = load(example, {"channel": "stable"}, kind)
        assert [p.spec for p in bp.packages][:4] == [
            "microshift-4.14.*", "microshift-greenboot-4.14.*", "microshift-networking-4.14.*",
            "microshift-selinux-4.14.*",
        ]  # fmt: skip
        assert bp.customizations.services.masked == ("grub-boot-success.timer",)
        assert bp.customizations.firewall.zones[0].sources == ("10.42.0.0/16", "169.254.169.1")
        secret = [f for f in bp.customizations.files if f.path == "/etc/crio/openshift-pull-secret"]
        assert secret and secret[0].mode == "0600"
        assert bp.fieldshift.channel == "stable"
