#!/bin/bash
# kvmtest-shell: the build/libvirt test's own view of the guest, independent
# of every guest agent under test. Baked into the test images (not part of
# the product), started at boot by kvmtest-shell.service.
#
# It serves the virtio-serial port org.kvmtest.shell.0: each request is one
# line "ID BASE64-SCRIPT"; the script runs under bash (stdin /dev/null,
# stdout and stderr captured) and the answer is one line
# "KVMTEST-SHELL ID EXIT-CODE BASE64-OUTPUT". While the host side is not
# connected, reads return end-of-file: the port is reopened after a pause.
set -u
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH

port=/dev/virtio-ports/org.kvmtest.shell.0
work=/run/kvmtest-shell
mkdir -p "$work"

while :; do
	if [[ ! -c $port ]] || ! exec 3<>"$port"; then
		sleep 0.5
		continue
	fi
	while IFS=' ' read -r id script <&3; do
		[[ -n $id ]] || continue
		if printf '%s' "$script" | base64 -d >"$work/cmd" 2>"$work/out"; then
			bash "$work/cmd" >"$work/out" 2>&1 </dev/null 3<&-
			rc=$?
		else
			rc=254
		fi
		printf 'KVMTEST-SHELL %s %d %s\n' "$id" "$rc" "$(base64 -w0 <"$work/out")" >&3
	done
	exec 3<&-
	sleep 0.2
done
