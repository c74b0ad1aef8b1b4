"""UEFI load options, device paths, boot order policy and variable stores."""
