"""Simulation of what tests cannot have for real: a device's boot.

- :mod:`tests.sim.sysroot`: real ostree sysroots in temp dirs (``Sysroot.create``, ``commit``, ``deploy``,
  ``deployments``, ``clone``), built with ``ostree admin --sysroot``.
- :mod:`tests.sim.firmware`: GRUB's boot counting applied to the real grubenv with ``grub-editenv`` (or run
  in real GRUB via grub-emu for the Debian menu), booting the real BLS entries: ``Firmware(root).boot()``.
- :mod:`tests.sim.device` (the agent's tests): a whole device on top of both.
"""
