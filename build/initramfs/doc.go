// Package initramfs builds the small initramfs images the end-to-end tests
// boot: a reproducible newc cpio writer, the Debian cloud kernel and
// busybox-static of an architecture fetched into a cache, the kernel modules
// the guest needs (with what modules.dep says they need, in load order), and
// an /init script that mounts the CD-ROM and starts the agent from it.
package initramfs
