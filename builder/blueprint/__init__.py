"""Blueprints: the osbuild / image-builder TOML format, parsed into typed, validated models."""
