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

prog=install-alpine.sh
pkgname=kvmmanager-agent
port=org.kvmmanager.agent.0
here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)

dry_run=0
usage() {
	cat <<EOF
Usage: sh $0 [--dry-run]
Install the KVM Manager guest agent .apk from this ISO (run it as root from
any directory).
  --dry-run  print what would be done, change nothing (root not needed)
EOF
}
for arg in "$@"; do
	case "$arg" in
	--dry-run) dry_run=1 ;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		usage >&2
		exit 2
		;;
	esac
done

say() { printf '%s\n' "$*"; }
die() {
	printf '%s: error: %s\n' "$prog" "$*" >&2
	exit 1
}
run() {
	if [ "$dry_run" = 1 ]; then
		say "would run: $*"
	else
		"$@"
	fi
}

machine_arch() {
	m=$(uname -m)
	case "$m" in
	x86_64 | amd64) echo amd64 ;;
	aarch64 | arm64) echo arm64 ;;
	*)
		printf '%s: error: unsupported architecture %s: this ISO has builds for x86_64 (amd64) and aarch64 (arm64) only\n' "$prog" "$m" >&2
		return 1
		;;
	esac
}

has_port() {
	[ -e "/dev/virtio-ports/$port" ] && return 0
	for f in /sys/class/virtio-ports/*/name; do
		[ -r "$f" ] && [ "$(cat "$f")" = "$port" ] && return 0
	done
	return 1
}

port_warning() {
	has_port && return 0
	cat >&2 <<EOF

WARNING: this VM has no virtio-serial port named $port, so the host
cannot reach the agent yet. Add this channel to the VM's libvirt XML
(virsh edit <vm>, inside <devices>), then shut the VM down and start it again:

  <channel type='unix'>
    <source mode='bind'/>
    <target type='virtio' name='$port'/>
  </channel>

The agent keeps retrying and connects when the port appears.
EOF
}

# apk_version prints the pkgver recorded in an .apk file's .PKGINFO.
apk_version() {
	tar -xzOf "$1" .PKGINFO 2>/dev/null | sed -n 's/^pkgver = //p'
}

if [ "$dry_run" = 0 ] && [ "$(id -u)" != 0 ]; then
	die "must run as root, e.g.: doas sh $0"
fi
arch=$(machine_arch) || exit 1
pkg=$here/packages/$arch/$pkgname.apk
[ -f "$pkg" ] || die "missing $pkg on the ISO"
port_state=missing
has_port && port_state=present
say "System: arch=$(uname -m) ($arch), package $pkg, port $port $port_state"

if ! command -v apk >/dev/null 2>&1; then
	say "apk not found: installing by copying files instead."
	if [ "$dry_run" = 1 ]; then
		exec sh "$here/install.sh" --generic --dry-run
	fi
	exec sh "$here/install.sh" --generic
fi

want=$(apk_version "$pkg")
have=$(apk info -v 2>/dev/null | sed -n "s/^$pkgname-\([0-9].*\)/\1/p")
did=""
if [ -n "$want" ] && [ "$have" = "$want" ]; then
	say "$pkgname $want is already installed; nothing to install."
else
	say "Installing $pkgname ${want:-} ($arch) from $pkg"
	run apk add --allow-untrusted "$pkg"
	did="installed $pkgname ${want:-}${have:+ (was: $have)}"
fi

if [ -e /run/openrc/softlevel ]; then
	# post-install starts it; start it here too if an admin stopped it, so
	# that a second run leaves it running.
	if ! rc-service "$pkgname" status >/dev/null 2>&1; then
		run rc-service "$pkgname" start
		did="${did:+$did; }started $pkgname"
	fi
else
	say "OpenRC is not running here: the agent starts at the next boot."
fi
if [ -n "$did" ]; then
	say "Done: $did."
else
	say "Nothing changed."
fi
say "Check it with: rc-service $pkgname status; tail /var/log/kvmmanager-agent/agent.log"
say "Configuration: /etc/kvmmanager-agent/config.json (then: rc-service $pkgname restart)"
port_warning
