//go:build mage

package main

import "context"

// Libvirt drives real libvirt through virsh against a Debian 12 guest running the agent (installed from the
// ISO) and one running Debian's qemu-guest-agent, checks guestinfo, domifaddr, domfsinfo, domtime,
// set-user-password, a quiesced snapshot, agent reboot and shutdown and the commands KVM Manager sends, and
// writes both transcripts side by side to dist/libvirt/transcript.md; also checks kvmmanager-agentctl setup
// (needs root and a running libvirtd: virtlogd -d; libvirtd -d; images are cached).
// KVMMANAGER_LIBVIRT_GUESTS=ours (or qemu-ga) runs one guest.
func Libvirt(ctx context.Context) error {
	return goCmd(ctx, "test", "-tags", "vmtest", "-run", "TestLibvirt", "-v", "-count=1", "-timeout", "40m", "./build/libvirt")
}
