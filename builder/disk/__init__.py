"""Bootable disk images built without root mounts or loop devices: GPT, an EFI system partition, an ostree root.

Each tool has its own wrapper module: :mod:`builder.disk.sysroot` (``ostree admin --sysroot``),
:mod:`builder.disk.grub` (``grub-mkstandalone``, ``grub-editenv``), :mod:`builder.disk.filesystems`
(``mkfs.ext4 -d``, ``mkfs.vfat`` + mtools), :mod:`builder.disk.gpt` (``sfdisk``, ``qemu-img``).
:mod:`builder.image` puts them together.
"""
