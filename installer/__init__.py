"""Plans and applies installs, uninstalls and repairs of the SwitchOS payload."""
