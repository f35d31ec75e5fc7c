"""Tests for publishing releases, the signed catalog and offline bundles (issue 5)."""
