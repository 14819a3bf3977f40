#!/bin/sh
# %postun for kvmmanager-agent (.rpm); $1 is 0 on erase, 1 on upgrade.
# After erase, forget the unit and the udev rule. rpm keeps an edited config
# as config.json.rpmsave; uninstall.sh --purge removes it.
if [ "$1" = 0 ] && [ -d /run/systemd/system ]; then
	systemctl --system daemon-reload >/dev/null 2>&1 || :
	udevadm control --reload >/dev/null 2>&1 || :
fi
exit 0
