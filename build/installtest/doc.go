// Package installtest holds the tests of the installers and service files:
// shellcheck on every installer and maintainer script, systemd-analyze on the
// unit, the udev rule's syntax, busybox sh running install-alpine.sh, and a
// Debian chroot (made with mmdebstrap, cached) where the ISO's installers
// install, upgrade, remove and purge the agent with dpkg, rpm and by copying
// files. It has no non-test code; its tests are run by `go tool mage test`.
// The tests that need the real disc (the chroot tests and busybox running
// install-alpine.sh, which build every binary and package) have the build
// tag vmtest; plain go test runs the rest.
package installtest
