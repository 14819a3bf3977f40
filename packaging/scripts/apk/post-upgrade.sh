#!/bin/sh
# post-upgrade for kvmmanager-agent (.apk): restart a running agent so the new
# binary serves; keep the runlevel as the admin left it.
if [ -e /run/openrc/softlevel ] && command -v rc-service >/dev/null 2>&1; then
	rc-service --ifstarted kvmmanager-agent restart || :
fi
exit 0
