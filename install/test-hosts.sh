#!/usr/bin/env bash
# What the editor plug-in tests need beyond Python: Krita 5 (Debian), Xvfb with a window manager
# (openbox) and screenshots (imagemagick) for the GUI tests, and GIMP 3 in a
# Debian 13 chroot. Idempotent: installs only what is missing. Needs root (CI runs as root).
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(krita python3-pyqt5 python3-sip python3-zmq python3-msgpack xvfb xauth xdotool openbox imagemagick debootstrap)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "Installing ${missing[*]} (for the editor tests)..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        > /tmp/neural-mirage-apt.log || { cat /tmp/neural-mirage-apt.log; exit 1; }
fi
bash install/gimp3-chroot.sh
