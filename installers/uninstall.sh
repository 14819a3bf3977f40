#!/bin/sh
# uninstall.sh: remove kvmmanager-agent, however it was installed from the ISO.
#
#   sh /media/cdrom/uninstall.sh [--purge] [--dry-run]
#
# Stops the agent, then removes the package through the package manager that
# owns it (dpkg, rpm, apk) or, after a generic install (install.sh copied the
# files), removes the binary, the systemd unit and udev rule or the OpenRC
# script. The configuration /etc/kvmmanager-agent/config.json (and
# /etc/conf.d/kvmmanager-agent) is kept; --purge removes it with the logs.
# Running it again when nothing is left succeeds and changes nothing.
set -eu
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH
export PATH

here=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
prog=uninstall.sh
# shellcheck source-path=SCRIPTDIR source=install-common.sh
. "$here/install-common.sh"

purge=0
usage() {
	cat <<EOF
Usage: sh $0 [--purge] [--dry-run]
Remove the KVM Manager guest agent (run it as root).
  --purge    also remove /etc/kvmmanager-agent, /etc/conf.d/kvmmanager-agent
             and /var/log/kvmmanager-agent
  --dry-run  print what would be done, change nothing (root not needed)
EOF
}
extra_option() {
	case "$1" in
	--purge) purge=1 ;;
	*) return 1 ;;
	esac
}
parse_args "$@"

# remove_path deletes files or directories that exist and records them.
remove_path() {
	for p in "$@"; do
		if [ -e "$p" ] || [ -L "$p" ]; then
			run rm -rf "$p"
			note "removed $p"
		fi
	done
}

require_root "sudo sh"

# Which package manager owns the agent, if any.
owner=none
dpkg_status=""
if have dpkg-query; then
	dpkg_status=$(dpkg-query -W -f='${Status}' "$pkgname" 2>/dev/null || true)
fi
case "$dpkg_status" in
*" installed" | *" config-files" | *" half-installed" | *" unpacked" | *" half-configured") owner=dpkg ;;
esac
if [ "$owner" = none ] && have rpm && rpm -q --quiet "$pkgname" 2>/dev/null; then
	owner=rpm
fi
if [ "$owner" = none ] && have apk && apk info -e "$pkgname" >/dev/null 2>&1; then
	owner=apk
fi

# Stop the agent first (the package scripts would too; a generic install has
# none).
if systemd_running && systemctl is-active --quiet "$pkgname" 2>/dev/null; then
	run systemctl stop "$pkgname"
	note "stopped $pkgname.service"
fi
if openrc_running && [ -x /etc/init.d/$pkgname ] &&
	rc-service "$pkgname" status >/dev/null 2>&1; then
	run rc-service "$pkgname" stop
	note "stopped the $pkgname service"
fi

case "$owner" in
dpkg)
	if [ "$purge" = 1 ]; then
		run dpkg --purge "$pkgname"
		note "purged the $pkgname package"
	elif [ "$dpkg_status" != "deinstall ok config-files" ]; then
		run dpkg --remove "$pkgname"
		note "removed the $pkgname package"
	fi
	;;
rpm)
	run rpm -e "$pkgname"
	note "removed the $pkgname package"
	# rpm -e renames an edited %config file to .rpmsave; put it back so that
	# only --purge loses the admin's config, as with dpkg and apk.
	cfg=/etc/kvmmanager-agent/config.json
	if [ "$purge" = 0 ] && [ -e "$cfg.rpmsave" ] && [ ! -e "$cfg" ]; then
		run mv "$cfg.rpmsave" "$cfg"
		note "kept your edited $cfg (rpm had renamed it to .rpmsave)"
	fi
	;;
apk)
	run apk del "$pkgname"
	note "removed the $pkgname package"
	;;
none)
	# Generic install: the files install.sh copies.
	for link in /etc/runlevels/*/"$pkgname"; do
		[ -L "$link" ] || continue
		level=$(basename "$(dirname "$link")")
		run rc-update del "$pkgname" "$level"
		note "removed $pkgname from the $level runlevel"
	done
	units_before=$done_list
	remove_path /usr/lib/systemd/system/$pkgname.service \
		/usr/lib/udev/rules.d/60-$pkgname.rules \
		"/etc/systemd/system/dev-virtio\\x2dports-org.kvmmanager.agent.0.device.wants/$pkgname.service"
	if [ "$done_list" != "$units_before" ] && systemd_running; then
		run systemctl daemon-reload
		run udevadm control --reload
	fi
	remove_path /etc/init.d/$pkgname /usr/bin/$pkgname
	;;
esac

if [ "$purge" = 1 ]; then
	remove_path /etc/kvmmanager-agent /etc/conf.d/$pkgname /var/log/kvmmanager-agent
fi

if [ -z "$done_list" ]; then
	say "kvmmanager-agent is not installed; nothing to do."
else
	changed_line "$done_list"
fi
if [ "$purge" = 0 ]; then
	for c in /etc/kvmmanager-agent/config.json /etc/conf.d/$pkgname; do
		[ -e "$c" ] && say "Kept $c (uninstall.sh --purge removes it)."
	done
fi
end_dry_run
exit 0
