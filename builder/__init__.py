"""fieldshift builder: compile blueprints into rpm-ostree compatible commits and publish releases."""
