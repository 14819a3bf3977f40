#!/bin/sh
# %post for kvmmanager-agent (.rpm); $1 is 1 on install, 2 on upgrade.
# Reload systemd and udev when systemd is running, re-run udev on the ports so
# their device units exist, and (re)start the agent at once when the VM has the
# port; on upgrade this restart picks up the new binary. Never fails in a
# chroot or a container image build.

unit=kvmmanager-agent.service
# The agent serves either port: protocol 1.0 and the QEMU guest agent's.
ports="org.kvmmanager.agent.0 org.qemu.guest_agent.0"

has_port() {
	[ -e "/dev/virtio-ports/$1" ] && return 0
	for f in /sys/class/virtio-ports/*/name; do
		[ -r "$f" ] && [ "$(cat "$f")" = "$1" ] && return 0
	done
	return 1
}

if [ -d /run/systemd/system ]; then
	systemctl --system daemon-reload >/dev/null 2>&1 || :
	udevadm control --reload >/dev/null 2>&1 || :
	found=0
	for port in $ports; do
		has_port "$port" || continue
		found=1
		udevadm trigger --action=add --subsystem-match=virtio-ports \
			--attr-match=name="$port" >/dev/null 2>&1 || :
	done
	if [ "$found" = 1 ]; then
		udevadm settle --timeout=10 >/dev/null 2>&1 || :
		systemctl restart "$unit" ||
			echo "kvmmanager-agent: could not start $unit; see: journalctl -u $unit" >&2
	fi
fi
exit 0
