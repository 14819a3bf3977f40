#!/bin/sh
# %preun for kvmmanager-agent (.rpm); $1 is 0 on erase, 1 on upgrade.
# Stop the agent only on erase; on upgrade the new %post restarts it.
if [ "$1" = 0 ] && [ -d /run/systemd/system ]; then
	systemctl stop kvmmanager-agent.service >/dev/null 2>&1 || :
fi
exit 0
