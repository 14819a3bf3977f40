#!/bin/bash
# install-rhel.sh: install kvmmanager-agent on RHEL, Fedora, CentOS Stream,
# Rocky, AlmaLinux, openSUSE and other rpm systems from this ISO's .rpm.
#
#   sudo bash /media/cdrom/install-rhel.sh [--dry-run]
#
# Installs packages/<arch>/kvmmanager-agent.rpm with rpm -Uvh (a local file,
# no dependencies, so no repository is contacted). The config is
# %config(noreplace): an edited /etc/kvmmanager-agent/config.json is kept and
# a changed default lands in config.json.rpmnew. The package's %post starts
# the agent at once when the VM has the org.kvmmanager.agent.0 port; udev
# starts it at every boot. Running it again with the same ISO changes
# nothing. Without rpm it falls back to install.sh --generic (copy the
# files). Files are found next to this script, whatever the working
# directory; nothing is written next to it (the ISO is read-only).
set -euo pipefail
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH
export PATH

here=$(CDPATH='' cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
prog=install-rhel.sh
# shellcheck source-path=SCRIPTDIR source=install-common.sh
. "$here/install-common.sh"

usage() { package_usage "sudo bash" rpm; }
parse_args "$@"
require_root "sudo bash"
find_package rpm

copy_without rpm

qf='%{VERSION}-%{RELEASE}'
want=$(rpm -qp --qf "$qf" "$pkg" 2>/dev/null) || die "cannot read the version of $pkg"
current=$(rpm -q --qf "$qf" "$pkgname" 2>/dev/null) || current=""
did=""
if [[ $current == "$want" ]]; then
	say "$pkgname $want is already installed; nothing to install."
else
	say "Installing $pkgname $want ($arch) from $pkg"
	# --oldpackage: installing from an ISO means "this version", even older.
	run rpm -Uvh --oldpackage "$pkg"
	did="installed $pkgname $want${current:+ (was: $current)}"
fi

systemd_start
summary "$did" "systemctl status $pkgname; journalctl -u $pkgname" "systemctl restart $pkgname"
