#!/bin/bash
# kvmtest-admin: plays the administrator of a build/distro test VM. Baked into
# the test images, it runs once per boot after the init system is up
# (kvmtest-admin.service under systemd, an inittab "once" entry under OpenRC).
#
# At the first boot it mounts the CD-ROM on /media/cdrom and runs, from /root,
# the install command written in /etc/kvmtest/install (what an admin would
# type), exactly once (marker /var/lib/kvmtest/installed). With
# kvmtest.observe=SECONDS on the kernel command line it then waits that long,
# dumps the agent's service state and log (systemd: systemctl show and the
# journal; OpenRC: rc-service status and the log file), and powers the VM off.
#
# Everything it reports goes to the second serial port (/dev/ttyS1), which the
# host reads from a file: no kernel messages are interleaved there. Each
# report is a block "KVMTEST-BEGIN name" ... "KVMTEST-END name rc=N", or a
# single line "KVMTEST key=value".
set -u
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH

report=/dev/ttyS1
state=/var/lib/kvmtest

# Raw output: no \n -> \r\n translation on the report port.
stty -F "$report" raw -echo 2>/dev/null || true

line() { printf 'KVMTEST %s\n' "$*" >"$report"; }

# section NAME CMD...: runs CMD with its output in a named block.
section() {
	local name=$1 rc
	shift
	printf 'KVMTEST-BEGIN %s\n' "$name" >"$report"
	"$@" >"$report" 2>&1 </dev/null
	rc=$?
	printf '\nKVMTEST-END %s rc=%d\n' "$name" "$rc" >"$report"
	return "$rc"
}

# param NAME prints the value of NAME=VALUE on the kernel command line.
param() {
	local w
	for w in $(</proc/cmdline); do
		case $w in
		"$1"=*)
			printf '%s\n' "${w#*=}"
			return 0
			;;
		esac
	done
	return 1
}

mkdir -p "$state" /media/cdrom
boots=$(($(cat "$state/boots" 2>/dev/null || echo 0) + 1))
echo "$boots" >"$state/boots"
line "boot=$boots"

if [[ ! -e $state/installed ]]; then
	# The CD-ROM's driver and file system load through udev; wait for them.
	for _ in $(seq 60); do
		[[ -b /dev/sr0 ]] && break
		sleep 1
	done
	section mount mount -o ro /dev/sr0 /media/cdrom
	read -r install </etc/kvmtest/install
	cd /root || exit 1
	# shellcheck disable=SC2086 # the install command is split into words on purpose
	section install $install
	touch "$state/installed"
fi
line "admin-done boot=$boots"

if observe=$(param kvmtest.observe); then
	sleep "$observe"
	if [[ -d /run/systemd/system ]]; then
		section service systemctl show -p NRestarts -p ActiveState -p SubState -p LoadState kvmmanager-agent
		section journal journalctl -u kvmmanager-agent -o short-unix --no-pager
		line "observe-done"
		systemctl --no-block poweroff
	else
		section service rc-service kvmmanager-agent status
		section log cat /var/log/kvmmanager-agent/agent.log
		line "observe-done"
		poweroff
	fi
fi
exit 0
