package iso

import (
	"fmt"
	"strings"
)

// InstallStep is one installer command an admin runs in the guest, and for
// which systems.
type InstallStep struct {
	Command, For string
}

// The install instructions: readme.txt on the disc is rendered from these,
// and a test holds README.md's install section to them, so the two cannot
// drift apart.
var (
	// MountStep mounts the disc where the commands expect it.
	MountStep = "mkdir -p /media/cdrom && mount /dev/sr0 /media/cdrom"
	// InstallSteps are the installers, in README's order.
	InstallSteps = []InstallStep{
		{"bash /media/cdrom/install-debian.sh", "Debian, Ubuntu (.deb)"},
		{"bash /media/cdrom/install-rhel.sh", "RHEL, Fedora, Rocky, Alma, openSUSE (.rpm)"},
		{"sh /media/cdrom/install-alpine.sh", "Alpine (.apk, OpenRC)"},
		{"sh /media/cdrom/install.sh", "any Linux: picks one of the above, or copies the files"},
	}
	// UninstallStep removes the agent (--purge also its config and logs).
	UninstallStep = "sh /media/cdrom/uninstall.sh"
	// ChannelXML are the libvirt elements that give a VM the agent's ports:
	// either is enough (protocol 1.0, or the QEMU guest agent protocol).
	ChannelXML = "<channel type='unix'>\n  <source mode='bind'/>\n  <target type='virtio' name='org.kvmmanager.agent.0'/>\n</channel>\n" +
		"<channel type='unix'>\n  <source mode='bind'/>\n  <target type='virtio' name='org.qemu.guest_agent.0'/>\n</channel>\n"
)

// installText is the install part of readme.txt, without its last newline.
func installText() string {
	var b strings.Builder
	b.WriteString(`Install (as root, from any directory). A desktop mounts the disc by itself,
under /media/$USER/KVMMANAGER_AGENT or /run/media/$USER/KVMMANAGER_AGENT: use
that directory instead of /media/cdrom. Otherwise mount it first:

`)
	fmt.Fprintf(&b, "    %s\n", MountStep)
	for _, s := range InstallSteps {
		fmt.Fprintf(&b, "    %-38s %s\n", s.Command, s.For)
	}
	fmt.Fprintf(&b, "    %-38s %s\n", UninstallStep, "remove (--purge also removes the config)")
	b.WriteString(`
Then check it with "systemctl status kvmmanager-agent" (or
"rc-service kvmmanager-agent status" under OpenRC). The VM needs one of these
channels inside <devices> of its libvirt definition ("virsh edit VM", then
shut the VM down and start it): org.kvmmanager.agent.0 carries the agent's
protocol 1.0, org.qemu.guest_agent.0 the QEMU guest agent protocol (the port
virt-manager adds to every VM). Either is enough:

`)
	for line := range strings.Lines(ChannelXML) {
		b.WriteString("    " + line)
	}
	return strings.TrimSuffix(b.String(), "\n")
}
