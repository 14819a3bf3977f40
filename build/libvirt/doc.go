// Package libvirt is the libvirt end-to-end harness (`go tool mage libvirt`):
// it drives real libvirt through real virsh against two guests booted from
// one Debian 12 image built by build/distro with Debian's qemu-guest-agent:
// in one an admin replaces it with kvmmanager-agent from the ISO ("ours"),
// the other keeps it (the reference, "qemu-ga"). It
// checks every virsh agent feature (guestinfo, domifaddr --source agent,
// domfsinfo, domtime, set-user-password, quiesced snapshots, agent shutdown
// and reboot, qemu-agent-command with the commands KVM Manager sends)
// against the guest's own view, read through a test shell on a third
// virtio-serial port that no agent touches. The two guests' transcripts are
// compared and written side by side to dist/libvirt/transcript.md.
//
// The package also checks `kvmmanager-agentctl setup` on a domain defined
// without the agent channels or a CD-ROM.
//
// Domains are <domain type='qemu'> (TCG), boot the image's kernel directly,
// write to a qcow2 overlay of the cached image and run QEMU as root with
// relabelling off, so that nothing under the image cache changes owner.
// Every domain is destroyed and undefined when its test ends, pass or fail.
package libvirt
