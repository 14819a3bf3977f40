#!/bin/bash
# kvmtest-install: the first-boot install of a build/libvirt test VM, run by
# the administrator (kvmtest-admin) from /root with the ISO on /media/cdrom.
# Baked into the test image (not part of the product). One image serves both
# guests; kvmtest.agent= on the kernel command line says which agent answers
# org.qemu.guest_agent.0:
#   ours     an admin replaces Debian's qemu-guest-agent with kvmmanager-agent
#            from the ISO;
#   qemu-ga  the reference: qemu-guest-agent stays, nothing is installed.
set -eu
agent=
for w in $(</proc/cmdline); do
	case $w in
	kvmtest.agent=*) agent=${w#*=} ;;
	esac
done
case $agent in
ours)
	dpkg --purge qemu-guest-agent
	bash /media/cdrom/install-debian.sh
	;;
qemu-ga)
	echo "keeping qemu-guest-agent $(dpkg-query -W -f='${Version}' qemu-guest-agent)"
	;;
*)
	echo "kvmtest-install: kvmtest.agent=ours|qemu-ga is not on the kernel command line" >&2
	exit 1
	;;
esac
