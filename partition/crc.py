"""CRC32C (Castagnoli), the checksum of the snapshot store headers.

The ``crc32c`` package computes it with the SSE 4.2 instruction where the CPU
has one and with a table otherwise. The payload uses the same polynomial
(0x1EDC6F41, reflected 0x82F63B78), initial value 0xFFFFFFFF and final XOR
0xFFFFFFFF, so the check value of ``b"123456789"`` is 0xE3069283.
"""

from __future__ import annotations

import crc32c as _crc32c

CHECK_VALUE = 0xE3069283


def compute_crc32c(data: bytes) -> int:
    """Return the CRC32C of ``data`` as an unsigned 32-bit integer."""
    return int(_crc32c.crc32c(data)) & 0xFFFFFFFF


def compute_crc32c_with_zeroed_field(data: bytes, field_offset: int) -> int:
    """Return the CRC32C of ``data`` with the four bytes at ``field_offset`` read as zero."""
    return compute_crc32c(data[:field_offset] + bytes(4) + data[field_offset + 4 :])
