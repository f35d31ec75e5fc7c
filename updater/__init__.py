"""fieldshift updater: the device agent that verifies, pulls, stages and confirms updates."""
