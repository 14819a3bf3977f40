package libvirt

// Documented lists the expected differences between qemu-ga's run and ours
// (Difference.Key), each with its reason; any other difference fails the
// test. Deliberate differences of the agent are in agent/PROTOCOL-qga.md.
var Documented = map[string]string{}
