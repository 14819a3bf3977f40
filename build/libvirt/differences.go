package libvirt

// Documented lists the expected differences between qemu-ga's run and ours
// (Difference.Key), each with its reason; any other difference fails the
// test. Deliberate differences of the agent are in agent/PROTOCOL-qga.md.
var Documented = map[string]string{
	"reboot --mode agent: fails with qemu-ga only":   ReferenceFailures["reboot --mode agent"],
	"shutdown --mode agent: fails with qemu-ga only": ReferenceFailures["shutdown --mode agent"],
}

// ReferenceFailures are the steps qemu-ga (Debian 12's 7.2) fails on the test
// image, with the reason: logged for the reference, not test failures.
var ReferenceFailures = map[string]string{
	"reboot --mode agent": "qemu-ga runs `shutdown -r +0`, which asks logind over D-Bus; the image, like a minimal " +
		"Debian 12, has no D-Bus (\"child process has failed to shutdown\"); ours does not need D-Bus",
	"shutdown --mode agent": "qemu-ga runs `shutdown -h -P +0`, which asks logind over D-Bus; the image, like a minimal " +
		"Debian 12, has no D-Bus (\"child process has failed to shutdown\"); ours does not need D-Bus",
}
