#!/bin/sh
# install-alpine.sh: install kvmmanager-agent on Alpine Linux from this ISO's
# .apk (POSIX sh; runs under busybox ash).
#
#   sh /media/cdrom/install-alpine.sh [--dry-run]
#
# Installs packages/<arch>/kvmmanager-agent.apk with
# `apk add --allow-untrusted` (the package is not signed with an Alpine key).
# The package's post-install adds the OpenRC service to the default runlevel
# and starts it; the agent finds the port through sysfs (Alpine uses mdev, so
# there is no /dev/virtio-ports link) and logs to
# /var/log/kvmmanager-agent/agent.log. An edited config is kept on upgrade.
# Running it again with the same ISO changes nothing. Without apk it falls
# back to install.sh --generic (copy the files). --dry-run prints the
# detected system and the commands without running them. Files are found next
# to this script, whatever the working directory.
set -eu
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH
export PATH

here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
prog=install-alpine.sh
# shellcheck source-path=SCRIPTDIR source=install-common.sh
. "$here/install-common.sh"

usage() { package_usage sh apk; }
parse_args "$@"

# apk_version prints the pkgver recorded in an .apk file's .PKGINFO.
apk_version() {
	tar -xzOf "$1" .PKGINFO 2>/dev/null | sed -n 's/^pkgver = //p'
}

require_root "doas sh"
find_package apk
port_state=missing
has_port_named "$port" && port_state=present
qga_state=missing
has_port_named "$qga_port" && qga_state=present
say "System: arch=$(uname -m) ($arch), package $pkg, port $port $port_state, port $qga_port $qga_state"

copy_without apk

want=$(apk_version "$pkg")
current=$(apk info -v 2>/dev/null | sed -n "s/^$pkgname-\([0-9].*\)/\1/p")
did=""
if [ -n "$want" ] && [ "$current" = "$want" ]; then
	say "$pkgname $want is already installed; nothing to install."
else
	say "Installing $pkgname ${want:-} ($arch) from $pkg"
	run apk add --allow-untrusted "$pkg"
	did="installed $pkgname ${want:-}${current:+ (was: $current)}"
fi

if openrc_running; then
	# post-install starts it; start it here too if an admin stopped it, so
	# that a second run leaves it running.
	if ! rc-service "$pkgname" status >/dev/null 2>&1; then
		run rc-service "$pkgname" start
		did="${did:+$did; }started $pkgname"
	fi
else
	say "OpenRC is not running here: the agent starts at the next boot."
fi
summary "$did" "rc-service $pkgname status; tail /var/log/kvmmanager-agent/agent.log" "rc-service $pkgname restart" \
	"The agent keeps retrying and connects when a port appears."
