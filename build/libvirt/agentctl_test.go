//go:build vmtest

package libvirt_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvmmanager/guest-agent/build/distro"
	"github.com/kvmmanager/guest-agent/build/libvirt"
)

// installedISO is where `kvmmanager-agentctl iso install` puts the ISO and
// where setup (like KVM Manager's "Mount Agent ISO") takes it from.
const installedISO = "/var/lib/libvirt/images/kvmmanager-guest-agent.iso"

// testAgentctlSetup runs `kvmmanager-agentctl iso install` and `setup` on a
// defined domain without the agent channels or a CD-ROM, checks the
// persistent definition libvirt then has, and that a second setup changes
// nothing.
func testAgentctlSetup(t *testing.T, e *env) {
	dir := filepath.Join(e.workDir, "setup")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	img := e.image
	d := libvirt.Domain{
		Name: "kvmtest-libvirt-setup", Kernel: img.Kernel, Initrd: img.Initrd, Cmdline: distro.KernelAppend(),
		Disk: filepath.Join(dir, "disk.qcow2"), Console: filepath.Join(dir, "console.log"), NoAgentDevices: true,
	}
	if err := img.Overlay(context.Background(), d.Disk); err != nil {
		t.Fatal(err)
	}
	define(t, e, d, true)

	agentctl := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, e.agentctl, args...)
		cmd.Env = append(os.Environ(), "LIBVIRT_DEFAULT_URI="+libvirt.SystemURI)
		out, err := cmd.CombinedOutput()
		t.Logf("$ kvmmanager-agentctl %s\n%s", strings.Join(args, " "), out)
		if err != nil {
			t.Fatalf("kvmmanager-agentctl %s: %v", strings.Join(args, " "), err)
		}
		return string(out)
	}
	agentctl("iso", "install", e.iso)
	if fi, err := os.Stat(installedISO); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("installed ISO: %v, %v", fi, err)
	}
	agentctl("setup", d.Name)

	doc, err := e.virsh.Must(context.Background(), "dumpxml", "--inactive", d.Name)
	if err != nil {
		t.Fatal(err)
	}
	x, err := libvirt.ParseLiveXML([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	for _, port := range []string{libvirt.PortAgent, libvirt.PortQGA} {
		c, ok := x.Channel(port)
		// The inactive XML leaves out <source mode='bind'/>: libvirt picks
		// the socket path at start.
		if !ok || c.Type != "unix" || (c.Source.Mode != "" && c.Source.Mode != "bind") {
			t.Errorf("after setup: channel %s: %+v (present %v), want a unix channel with a socket libvirt picks", port, c, ok)
		}
	}
	cds := x.CDROMs()
	if len(cds) != 1 || cds[0].Source.File != installedISO || cds[0].ReadOnly == nil || cds[0].Target.Bus != "sata" {
		t.Errorf("after setup: CD-ROMs %+v, want one read-only SATA drive with %s", cds, installedISO)
	}

	out := agentctl("setup", d.Name)
	if strings.Contains(out, "added") || strings.Contains(out, "attached") || strings.Contains(out, "inserted") {
		t.Errorf("second setup changed the domain:\n%s", out)
	}
	again, err := e.virsh.Must(context.Background(), "dumpxml", "--inactive", d.Name)
	if err != nil {
		t.Fatal(err)
	}
	if again != doc {
		t.Errorf("the definition changed on the second setup:\n%s\nthen\n%s", doc, again)
	}
}
