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

prog=install-debian.sh
pkgname=kvmmanager-agent
port=org.kvmmanager.agent.0
here=$(CDPATH='' cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)

dry_run=0
usage() {
	cat <<EOF
Usage: sudo bash $0 [--dry-run]
Install the KVM Manager guest agent .deb from this ISO (run it as root from
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
	if ((dry_run)); then
		say "would run: $*"
	else
		"$@"
	fi
}

machine_arch() {
	local m
	m=$(uname -m)
	case "$m" in
	x86_64 | amd64) echo amd64 ;;
	aarch64 | arm64) echo arm64 ;;
	*) die "unsupported architecture $m: this ISO has builds for x86_64 (amd64) and aarch64 (arm64) only" ;;
	esac
}

has_port() {
	[[ -e /dev/virtio-ports/$port ]] && return 0
	local f
	for f in /sys/class/virtio-ports/*/name; do
		[[ -r $f && $(<"$f") == "$port" ]] && return 0
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

The agent starts by itself when the port appears.
EOF
}

if ((!dry_run)) && ((EUID != 0)); then
	die "must run as root, e.g.: sudo bash $0"
fi
arch=$(machine_arch) || exit 1
pkg=$here/packages/$arch/$pkgname.deb
[[ -f $pkg ]] || die "missing $pkg on the ISO"

if ! command -v dpkg >/dev/null 2>&1; then
	say "dpkg not found: installing by copying files instead."
	if ((dry_run)); then
		exec sh "$here/install.sh" --generic --dry-run
	fi
	exec sh "$here/install.sh" --generic
fi

want=$(dpkg-deb --field "$pkg" Version) || die "cannot read the version of $pkg"
have=$(dpkg-query -W -f='${Status}|${Version}' "$pkgname" 2>/dev/null || true)
did=""
if [[ $have == "install ok installed|$want" ]]; then
	say "$pkgname $want is already installed; nothing to install."
else
	say "Installing $pkgname $want ($arch) from $pkg"
	run dpkg --force-confdef --force-confold --install "$pkg"
	did="installed $pkgname $want${have:+ (was: ${have#*|})}"
fi

if [[ -d /run/systemd/system ]]; then
	# postinst (re)starts the agent when the port exists; start it here too
	# if an admin stopped it, so that a second run leaves it running.
	if has_port && ! systemctl is-active --quiet "$pkgname"; then
		run systemctl start "$pkgname"
		did="${did:+$did; }started $pkgname.service"
	fi
	state=$(systemctl is-active "$pkgname" 2>/dev/null || true)
	say "Service $pkgname: ${state:-unknown} (started by udev when the port $port appears)."
else
	say "systemd is not running here: the agent starts at the next boot with systemd."
fi
if [[ -n $did ]]; then
	say "Done: $did."
else
	say "Nothing changed."
fi
say "Check it with: systemctl status $pkgname; journalctl -u $pkgname"
say "Configuration: /etc/kvmmanager-agent/config.json (then: systemctl restart $pkgname)"
port_warning
