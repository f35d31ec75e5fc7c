"""fieldshift test suite."""
