"""The test bed: OVMF QEMU machines, a Linux guest and the stand-in payload."""
