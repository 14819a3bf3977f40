// Package e2e holds the real-VM end-to-end test of the agent (TestVM, run
// by `go tool mage e2e`): it builds the installer ISO, boots it as a CD-ROM
// in QEMU guests of every shipped architecture whose initramfs starts the
// agent from the CD, and drives every protocol method through the
// virtio-serial port with the host client package, checking each answer
// against what the guest really is.
package e2e
