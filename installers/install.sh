#!/bin/sh
# install.sh: install kvmmanager-agent from this ISO on any Linux guest.
#
#   sh /media/cdrom/install.sh [--dry-run] [--generic]
#
# It reads ID and ID_LIKE from /etc/os-release and `uname -m`, then:
#   1. Alpine (or any system with apk)             -> install-alpine.sh (.apk)
#   2. Debian family with systemd running          -> install-debian.sh (.deb)
#   3. RHEL/Fedora/SUSE family with systemd running -> install-rhel.sh (.rpm)
#      (2 and 3 also apply when the .deb/.rpm is already installed, so an
#      upgrade always goes through the package manager that owns the files.)
#   4. anything else, e.g. Debian booted with OpenRC or sysvinit, or a distro
#      without dpkg/rpm/apk -> the generic path below: copy the static binary
#      to /usr/bin, the config (never overwriting an existing one), and the
#      service files of the init system found: the OpenRC script and conf.d
#      when openrc-run exists, else the systemd unit and udev rule.
# The .deb and .rpm carry only systemd units, hence the rule. --generic forces
# step 4; --dry-run prints the decision and the commands without running them.
# Every file is found next to this script, whatever the working directory;
# nothing is written next to it (the ISO is read-only).
set -eu
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH
export PATH

here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
prog=install.sh
# shellcheck source-path=SCRIPTDIR source=install-common.sh
. "$here/install-common.sh"

generic=0
usage() {
	cat <<EOF
Usage: sh $0 [--dry-run] [--generic]
Install the KVM Manager guest agent from this ISO, choosing the method for this
system (native package, or copying the files when no supported package
manager applies). Run it as root from any directory.
  --dry-run  print what would be done, change nothing (root not needed)
  --generic  copy the binary, config and service files instead of installing
             a package
EOF
}
extra_option() {
	case "$1" in
	--generic) generic=1 ;;
	*) return 1 ;;
	esac
}
parse_args "$@"

# os_field prints a field of os-release without its quotes.
os_field() {
	for f in /etc/os-release /usr/lib/os-release; do
		if [ -r "$f" ]; then
			sed -n "s/^$1=//p" "$f" | head -n 1 | tr -d "\"'"
			return 0
		fi
	done
}

# family maps ID/ID_LIKE (then the package tools present) to an installer.
family() {
	for w in $(os_field ID) $(os_field ID_LIKE); do
		case "$w" in
		alpine) echo alpine && return 0 ;;
		debian | ubuntu) echo debian && return 0 ;;
		rhel | fedora | centos | rocky | almalinux | ol | amzn | suse | sles | opensuse*) echo rhel && return 0 ;;
		esac
	done
	if have apk; then
		echo alpine
	elif have dpkg; then
		echo debian
	elif have rpm; then
		echo rhel
	else
		echo unknown
	fi
}

package_installed() {
	case "$1" in
	debian) have dpkg-query && [ "$(dpkg-query -W -f='${Status}' "$pkgname" 2>/dev/null || true)" = "install ok installed" ] ;;
	rhel) have rpm && rpm -q --quiet "$pkgname" 2>/dev/null ;;
	*) return 1 ;;
	esac
}

# install_one copies src to dst with mode unless dst already has that content
# and mode, and sets file_changed=1 when it copies. The copy goes through a
# temporary file and a rename, so a running binary is replaced, not rewritten.
install_one() {
	src=$1 dst=$2 mode=$3
	[ -f "$src" ] || die "missing $src on the ISO"
	if [ -f "$dst" ] && cmp -s "$src" "$dst" &&
		[ "$(stat -c %a "$dst")" = "${mode#0}" ]; then
		say "unchanged: $dst"
		return 0
	fi
	file_changed=1
	note "installed $dst"
	if [ "$dry_run" = 1 ]; then
		say "would install $src as $dst (mode $mode)"
		return 0
	fi
	mkdir -p "$(dirname "$dst")" || die "cannot create the directory of $dst"
	cp "$src" "$dst.kvmmanager-new" || die "cannot copy $src to $dst.kvmmanager-new"
	chmod "$mode" "$dst.kvmmanager-new" || die "cannot chmod $dst.kvmmanager-new"
	mv -f "$dst.kvmmanager-new" "$dst" || die "cannot rename $dst.kvmmanager-new to $dst"
}

# install_config installs src as dst only when dst does not exist yet.
install_config() {
	if [ -e "$2" ]; then
		say "kept existing $2"
		return 0
	fi
	install_one "$1" "$2" 0644
}

generic_openrc() {
	changed=$1
	file_changed=0
	install_one "$here/kvmmanager-agent.initd" /etc/init.d/kvmmanager-agent 0755
	[ "$file_changed" = 0 ] || changed=1
	install_config "$here/kvmmanager-agent.confd" /etc/conf.d/kvmmanager-agent
	if [ ! -e /etc/runlevels/default/kvmmanager-agent ]; then
		run rc-update add kvmmanager-agent default
		note "added kvmmanager-agent to the default runlevel"
	fi
	if ! openrc_running; then
		say "OpenRC is not running: kvmmanager-agent will start at the next boot."
		return 0
	fi
	if rc-service kvmmanager-agent status >/dev/null 2>&1; then
		if [ "$changed" = 1 ]; then
			run rc-service kvmmanager-agent restart
			note "restarted the kvmmanager-agent service"
		fi
	else
		run rc-service kvmmanager-agent start
		note "started the kvmmanager-agent service"
	fi
}

generic_systemd() {
	changed=$1
	file_changed=0
	install_one "$here/kvmmanager-agent.service" /usr/lib/systemd/system/kvmmanager-agent.service 0644
	install_one "$here/60-kvmmanager-agent.rules" /usr/lib/udev/rules.d/60-kvmmanager-agent.rules 0644
	units=$file_changed
	if ! systemd_running; then
		say "systemd is not running: udev starts kvmmanager-agent at boot when a port exists."
		return 0
	fi
	if [ "$units" = 1 ]; then
		run systemctl daemon-reload
		run udevadm control --reload
	fi
	has_port || return 0
	if [ "$units" = 1 ]; then
		run udevadm trigger --action=add --subsystem-match=virtio-ports
		run udevadm settle --timeout=10 || true
	fi
	if [ "$changed" = 1 ] || [ "$units" = 1 ] || ! systemctl is-active --quiet kvmmanager-agent; then
		run systemctl restart kvmmanager-agent
		note "(re)started kvmmanager-agent.service"
	fi
}

generic_install() {
	arch=$(machine_arch) || exit 1
	say "Installing kvmmanager-agent ($arch) by copying files (no package manager)."
	file_changed=0
	install_one "$here/linux-$arch/kvmmanager-agent" /usr/bin/kvmmanager-agent 0755
	changed=$file_changed
	install_config "$here/config.json" /etc/kvmmanager-agent/config.json
	if [ -x /sbin/openrc-run ] || [ -x /usr/sbin/openrc-run ] || have openrc-run; then
		generic_openrc "$changed"
		check="rc-service kvmmanager-agent status; tail /var/log/kvmmanager-agent/agent.log"
	elif systemd_running || have systemctl || [ -d /usr/lib/systemd/system ] || [ -d /lib/systemd/system ]; then
		generic_systemd "$changed"
		check="systemctl status kvmmanager-agent; journalctl -u kvmmanager-agent"
	else
		warn "neither OpenRC nor systemd found: start the agent from your init system:"
		warn "  /usr/bin/kvmmanager-agent --log-file /var/log/kvmmanager-agent/agent.log"
		check="pgrep -a kvmmanager-agent"
	fi
	if [ -z "$done_list" ]; then
		say "kvmmanager-agent is already installed from this ISO; nothing changed."
	else
		changed_line "$done_list"
	fi
	say "Check it with: $check"
	ports_report
	port_warning
	end_dry_run
}

require_root "sudo sh"
machine_arch >/dev/null || exit 1

fam=$(family)
opts=""
[ "$dry_run" = 1 ] && opts="--dry-run"
if [ "$generic" = 0 ]; then
	say "System: ID=$(os_field ID) ID_LIKE=$(os_field ID_LIKE) arch=$(uname -m) family=$fam"
	case "$fam" in
	alpine)
		say "Using install-alpine.sh"
		# shellcheck disable=SC2086 # opts is empty or one word
		exec sh "$here/install-alpine.sh" $opts
		;;
	debian | rhel)
		if systemd_running || package_installed "$fam"; then
			say "Using install-$fam.sh"
			# shellcheck disable=SC2086
			exec bash "$here/install-$fam.sh" $opts
		fi
		say "systemd is not running: the $fam package (systemd units only) does not apply; copying files."
		;;
	esac
fi
generic_install
