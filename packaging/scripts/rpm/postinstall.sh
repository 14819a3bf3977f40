#!/bin/sh
# %post for kvmmanager-agent (.rpm); $1 is 1 on install, 2 on upgrade.
# Reload systemd and udev when systemd is running, re-run udev on the port so
# its device unit exists, and (re)start the agent at once when the VM has the
# port; on upgrade this restart picks up the new binary. Never fails in a
# chroot or a container image build.

unit=kvmmanager-agent.service
port=org.kvmmanager.agent.0

has_port() {
	[ -e "/dev/virtio-ports/$port" ] && return 0
	for f in /sys/class/virtio-ports/*/name; do
		[ -r "$f" ] && [ "$(cat "$f")" = "$port" ] && return 0
	done
	return 1
}

if [ -d /run/systemd/system ]; then
	systemctl --system daemon-reload >/dev/null 2>&1 || :
	udevadm control --reload >/dev/null 2>&1 || :
	if has_port; then
		udevadm trigger --action=add --subsystem-match=virtio-ports \
			--attr-match=name="$port" >/dev/null 2>&1 || :
		udevadm settle --timeout=10 >/dev/null 2>&1 || :
		systemctl restart "$unit" ||
			echo "kvmmanager-agent: could not start $unit; see: journalctl -u $unit" >&2
	fi
fi
exit 0
