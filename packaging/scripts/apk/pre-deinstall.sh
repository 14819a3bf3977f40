#!/bin/sh
# pre-deinstall for kvmmanager-agent (.apk): stop the agent and remove it from
# every runlevel. apk keeps an edited /etc/kvmmanager-agent/config.json.
if [ -e /run/openrc/softlevel ] && command -v rc-service >/dev/null 2>&1; then
	rc-service --ifstarted kvmmanager-agent stop || :
fi
if command -v rc-update >/dev/null 2>&1; then
	rc-update --all delete kvmmanager-agent >/dev/null 2>&1 || :
fi
exit 0
