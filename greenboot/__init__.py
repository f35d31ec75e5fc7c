"""fieldshift greenboot: greenboot-compatible boot health checks, boot counting and fallback.

This is the lowest layer of fieldshift: it imports nothing from ``updater`` or ``builder``.
It also owns the few primitives every layer shares (user-facing errors, running external
programs, atomic file writes) so that the dependency direction stays greenboot <- updater <- builder.
"""
