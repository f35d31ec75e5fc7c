"""Tests of the compose pipeline (blueprint -> ostree commit)."""
