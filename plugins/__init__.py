"""The editor plug-ins' source; ``neural-mirage install-plugin`` copies them where editors look."""
