#!/usr/bin/env bash
# Build (once) a Debian 13 chroot with GIMP 3.0, its Python (GObject introspection), pyzmq and
# msgpack: Debian 12 has no GIMP 3. The GIMP plug-in tests run gimp-console-3.0 inside it.
# Skips the build when the chroot is already there. Needs root.
set -euo pipefail
root=${NEURAL_MIRAGE_GIMP_CHROOT:-/opt/neural-mirage-gimp3}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if [ -x "$root/usr/bin/gimp-console-3.0" ] && [ -f "$root/.neural-mirage-ready" ]; then
    exit 0
fi
echo "Building the GIMP 3 chroot in $root (about 2 minutes)..."
rm -rf "$root"
debootstrap --variant=minbase trixie "$root" "$mirror" > /tmp/neural-mirage-debootstrap.log 2>&1 \
    || { tail -30 /tmp/neural-mirage-debootstrap.log; exit 1; }
chroot "$root" apt-get update -qq
chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    gimp python3-gi gir1.2-gimp-3.0 python3-zmq python3-msgpack > /tmp/neural-mirage-gimp.log 2>&1 \
    || { tail -30 /tmp/neural-mirage-gimp.log; exit 1; }
chroot "$root" apt-get clean
chroot "$root" gimp-console-3.0 --version
touch "$root/.neural-mirage-ready"
