"""Payload download, PE checks and placement on the EFI System Partition."""
