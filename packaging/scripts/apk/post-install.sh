#!/bin/sh
# post-install for kvmmanager-agent (.apk): add the OpenRC service to the
# default runlevel and start it when OpenRC is running (not while building an
# image with apk --root). Without the port the agent logs and retries.
if command -v rc-update >/dev/null 2>&1; then
	rc-update add kvmmanager-agent default >/dev/null 2>&1 || :
fi
if [ -e /run/openrc/softlevel ] && command -v rc-service >/dev/null 2>&1; then
	rc-service kvmmanager-agent start || :
fi
exit 0
