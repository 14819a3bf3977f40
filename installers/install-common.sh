#!/bin/sh
# install-common.sh: helpers shared by the installers on this ISO. It is
# sourced, not run: install.sh, install-debian.sh, install-rhel.sh,
# install-alpine.sh and uninstall.sh each find it next to themselves:
#
#   here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
#   prog=install-foo.sh
#   # shellcheck source=install-common.sh
#   . "$here/install-common.sh"
#
# POSIX sh: it runs under bash (install-debian.sh, install-rhel.sh), dash and
# busybox ash (install-alpine.sh on Alpine). The caller sets prog (its name
# in messages) before sourcing it and defines usage(); a caller with options
# of its own (--generic, --purge) defines extra_option after sourcing it.

: "${prog:?set prog before sourcing install-common.sh}"
: "${here:?set here (the directory of the ISO) before sourcing install-common.sh}"
pkgname=kvmmanager-agent
port=org.kvmmanager.agent.0
qga_port=org.qemu.guest_agent.0
dry_run=0
# done_list collects what changed, one "  - ..." line per note.
done_list=""

say() { printf '%s\n' "$*"; }
warn() { printf '%s: warning: %s\n' "$prog" "$*" >&2; }
die() {
	printf '%s: error: %s\n' "$prog" "$*" >&2
	exit 1
}
# run prints a command in --dry-run mode and runs it otherwise.
run() {
	if [ "$dry_run" = 1 ]; then
		say "would run: $*"
	else
		"$@"
	fi
}
note() { done_list="$done_list
  - $*"; }
have() { command -v "$1" >/dev/null 2>&1; }

# changed_line says what a run changed, "Done:" and $1; under --dry-run
# nothing changed, so it says what a real run would do.
changed_line() {
	if [ "$dry_run" = 1 ]; then
		say "Would do:$1"
	else
		say "Done:$1"
	fi
}

# end_dry_run ends the output of a --dry-run with a line saying so.
end_dry_run() {
	if [ "$dry_run" = 1 ]; then
		say "Dry run: nothing was changed (run without --dry-run to do it)."
	fi
}
systemd_running() { [ -d /run/systemd/system ]; }
openrc_running() { [ -e /run/openrc/softlevel ]; }

# extra_option handles an option other than --dry-run and --help; it returns
# 1 for an unknown one. Callers with options of their own redefine it.
extra_option() { return 1; }

# parse_args sets dry_run from --dry-run, prints usage for --help, passes
# other options to extra_option, and exits 2 with the usage on stderr for an
# option nobody knows.
parse_args() {
	for arg in "$@"; do
		case "$arg" in
		--dry-run) dry_run=1 ;;
		-h | --help)
			usage
			exit 0
			;;
		*)
			if ! extra_option "$arg"; then
				usage >&2
				exit 2
			fi
			;;
		esac
	done
}

# package_usage prints the usage of an installer of one package format:
# package_usage "sudo bash" deb.
package_usage() {
	cat <<EOF
Usage: $1 $0 [--dry-run]
Install the KVM Manager guest agent .$2 from this ISO (run it as root from
any directory).
  --dry-run  print what would be done, change nothing (root not needed)
EOF
}

# require_root exits unless the script runs as root (or only prints, with
# --dry-run); $1 is how to run it as root, e.g. "sudo sh".
require_root() {
	if [ "$dry_run" = 0 ] && [ "$(id -u)" != 0 ]; then
		die "must run as root, e.g.: $1 $0"
	fi
}

# machine_arch prints the Go architecture of this machine, or an error and
# returns 1 when the ISO has no build for it.
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

# find_package sets arch and pkg, the package of format $1 (deb, rpm, apk)
# for this machine on the ISO, and exits when it is missing.
find_package() {
	arch=$(machine_arch) || exit 1
	pkg=$here/packages/$arch/$pkgname.$1
	[ -f "$pkg" ] || die "missing $pkg on the ISO"
}

# copy_without runs install.sh --generic (copying the files) instead of this
# script when the package tool $1 is missing; it returns when $1 exists.
copy_without() {
	have "$1" && return 0
	say "$1 not found: installing by copying files instead."
	if [ "$dry_run" = 1 ]; then
		exec sh "$here/install.sh" --generic --dry-run
	fi
	exec sh "$here/install.sh" --generic
}

# has_port_named reports whether the VM has the virtio-serial port $1 (the
# udev link, or its name in sysfs where mdev makes no link).
has_port_named() {
	[ -e "/dev/virtio-ports/$1" ] && return 0
	for f in /sys/class/virtio-ports/*/name; do
		[ -r "$f" ] && [ "$(cat "$f")" = "$1" ] && return 0
	done
	return 1
}

# has_port reports whether the VM has either port the agent serves.
has_port() {
	has_port_named "$port" || has_port_named "$qga_port"
}

# qemu_ga_running reports whether qemu-ga runs (the agent then leaves
# org.qemu.guest_agent.0 to it).
qemu_ga_running() {
	for f in /proc/[0-9]*/comm; do
		[ -r "$f" ] && [ "$(cat "$f" 2>/dev/null)" = qemu-ga ] && return 0
	done
	return 1
}

# ports_report says which ports the agent will serve.
ports_report() {
	if has_port_named "$port"; then
		say "Port $port: present; the agent serves protocol 1.0 on it (KVM Manager)."
	else
		say "Port $port: missing."
	fi
	if ! has_port_named "$qga_port"; then
		say "Port $qga_port: missing."
	elif qemu_ga_running; then
		say "Port $qga_port: present, but qemu-ga runs: the agent leaves it to qemu-ga."
	elif grep -q '"qga_port"[[:space:]]*:[[:space:]]*"off"' /etc/kvmmanager-agent/config.json 2>/dev/null; then
		say "Port $qga_port: present, but qga_port is \"off\" in the config: the agent leaves it."
	else
		say "Port $qga_port: present; the agent serves the QEMU guest agent protocol on it (libvirt, virsh)."
	fi
}

# port_warning tells, on stderr, how to add the ports when the VM has
# neither; $1 (optional) is the last line, how the agent reacts when one
# appears.
port_warning() {
	has_port && return 0
	cat >&2 <<EOF

WARNING: this VM has no virtio-serial port named $port or $qga_port,
so no host can reach the agent yet. Add these channels to the VM's libvirt
XML (virsh edit <vm>, inside <devices>), then shut the VM down and start it
again:

  <channel type='unix'>
    <source mode='bind'/>
    <target type='virtio' name='$port'/>
  </channel>
  <channel type='unix'>
    <source mode='bind'/>
    <target type='virtio' name='$qga_port'/>
  </channel>

${1:-The agent starts by itself when a port appears.}
EOF
}

# systemd_start makes sure the agent of a package runs when systemd does and
# the port exists: the package's post-install script (re)starts it, so this
# only starts it again when an admin stopped it, and a second run leaves it
# running. It adds what it did to did and reports the service state.
systemd_start() {
	if systemd_running; then
		if has_port && ! systemctl is-active --quiet "$pkgname"; then
			run systemctl start "$pkgname"
			did="${did:+$did; }started $pkgname.service"
		fi
		state=$(systemctl is-active "$pkgname" 2>/dev/null || true)
		say "Service $pkgname: ${state:-unknown} (started by udev when the port $port or $qga_port appears)."
	else
		say "systemd is not running here: the agent starts at the next boot with systemd."
	fi
}

# summary ends a package install: what it did ($1, "" for nothing), how to
# check the agent ($2) and apply a config edit ($3), and the port warning
# (with $4 as its last line, if given).
summary() {
	if [ -n "$1" ]; then
		changed_line " $1."
	else
		say "Nothing changed."
	fi
	say "Check it with: $2"
	say "Configuration: /etc/kvmmanager-agent/config.json (then: $3)"
	ports_report
	port_warning "${4:-}"
	end_dry_run
}
