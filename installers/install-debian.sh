#!/bin/bash
# install-debian.sh: install kvmmanager-agent on Debian, Ubuntu and their
# derivatives from this ISO's .deb.
#
#   sudo bash /media/cdrom/install-debian.sh [--dry-run]
#
# Installs packages/<arch>/kvmmanager-agent.deb with dpkg. An edited
# /etc/kvmmanager-agent/config.json is always kept (--force-confold), so the
# install also runs unattended, e.g. through the agent itself. The package's
# postinst starts the agent at once when the VM has the org.kvmmanager.agent.0
# port; udev starts it at every boot. Running it again with the same ISO
# changes nothing. Without dpkg it falls back to install.sh --generic (copy
# the files). Files are found next to this script, whatever the working
# directory; nothing is written next to it (the ISO is read-only).
set -euo pipefail
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH
export PATH

here=$(CDPATH='' cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
prog=install-debian.sh
# shellcheck source-path=SCRIPTDIR source=install-common.sh
. "$here/install-common.sh"

usage() { package_usage "sudo bash" deb; }
parse_args "$@"
require_root "sudo bash"
find_package deb

copy_without dpkg

want=$(dpkg-deb --field "$pkg" Version) || die "cannot read the version of $pkg"
current=$(dpkg-query -W -f='${Status}|${Version}' "$pkgname" 2>/dev/null || true)
did=""
if [[ $current == "install ok installed|$want" ]]; then
	say "$pkgname $want is already installed; nothing to install."
else
	say "Installing $pkgname $want ($arch) from $pkg"
	run dpkg --force-confdef --force-confold --install "$pkg"
	did="installed $pkgname $want${current:+ (was: ${current#*|})}"
fi

systemd_start
summary "$did" "systemctl status $pkgname; journalctl -u $pkgname" "systemctl restart $pkgname"
