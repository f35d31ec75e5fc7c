"""Distro definitions as data: one TOML file per distro, read by :mod:`builder.distro`."""
