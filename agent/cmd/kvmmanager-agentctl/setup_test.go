package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// fakeDomain is a fake virsh's domain: it renders its XML for dumpxml and
// applies attach-device, attach-disk and change-media as libvirt would.
type fakeDomain struct {
	name     string
	machine  string
	running  bool
	channels []string
	disks    []fakeDisk
	calls    [][]string
	fail     string // a virsh subcommand that fails
}

type fakeDisk struct{ device, dev, bus, file string }

func (d *fakeDomain) xml() string {
	var b strings.Builder
	fmt.Fprintf(&b, "<domain type='qemu'><name>%s</name><os><type arch='x86_64' machine='%s'>hvm</type></os><devices>\n", d.name, d.machine)
	for _, disk := range d.disks {
		fmt.Fprintf(&b, "<disk type='file' device='%s'>", disk.device)
		if disk.file != "" {
			fmt.Fprintf(&b, "<source file='%s'/>", disk.file)
		}
		fmt.Fprintf(&b, "<target dev='%s' bus='%s'/></disk>\n", disk.dev, disk.bus)
	}
	for _, c := range d.channels {
		fmt.Fprintf(&b, "<channel type='unix'><source mode='bind'/><target type='virtio' name='%s'/></channel>\n", c)
	}
	b.WriteString("<channel type='pty'><target type='serial' port='0'/></channel>\n</devices></domain>\n")
	return b.String()
}

var channelNameRe = regexp.MustCompile(`<target type='virtio' name='([^']+)'/>`)

func flag(args []string, name string) string {
	if i := slices.Index(args, name); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

func (d *fakeDomain) virsh(_ context.Context, args ...string) ([]byte, error) {
	d.calls = append(d.calls, args)
	if args[0] == d.fail {
		return nil, fmt.Errorf("virsh %s: error: operation failed", args[0])
	}
	if dom := flag(args, "--domain"); dom != d.name {
		return nil, fmt.Errorf("virsh %s: error: failed to get domain '%s'", args[0], dom)
	}
	switch args[0] {
	case "dumpxml":
		return []byte(d.xml()), nil
	case "domstate":
		if d.running {
			return []byte("running\n\n"), nil
		}
		return []byte("shut off\n\n"), nil
	case "attach-device":
		b, err := os.ReadFile(flag(args, "--file"))
		if err != nil {
			return nil, err
		}
		m := channelNameRe.FindSubmatch(b)
		if m == nil || !bytes.Contains(b, []byte("<source mode='bind'/>")) {
			return nil, fmt.Errorf("fake virsh: unexpected device %s", b)
		}
		d.channels = append(d.channels, string(m[1]))
	case "attach-disk":
		if flag(args, "--type") != "cdrom" || flag(args, "--mode") != "readonly" {
			return nil, fmt.Errorf("fake virsh: want a read-only cdrom: %q", args)
		}
		d.disks = append(d.disks, fakeDisk{"cdrom", flag(args, "--target"), flag(args, "--targetbus"), flag(args, "--source")})
	case "change-media":
		for i := range d.disks {
			if d.disks[i].dev == flag(args, "--path") {
				if slices.Contains(args, "--insert") && d.disks[i].file != "" {
					return nil, fmt.Errorf("virsh change-media: error: the drive has media")
				}
				d.disks[i].file = flag(args, "--source")
				return nil, nil
			}
		}
		return nil, fmt.Errorf("virsh change-media: error: no disk %s", flag(args, "--path"))
	default:
		return nil, fmt.Errorf("fake virsh: unexpected %q", args)
	}
	return nil, nil
}

// runSetup runs agentctl with a fake virsh and an image directory holding
// an ISO.
func runSetup(t *testing.T, d *fakeDomain, images string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, env{
		stdin: strings.NewReader(""), stdout: &out, stderr: &errOut,
		virsh: d.virsh, imagesDir: images,
	})
	return code, out.String(), errOut.String()
}

func TestSetup(t *testing.T) {
	images := t.TempDir()
	iso := filepath.Join(images, isoName)
	if err := os.WriteFile(iso, []byte("iso"), 0o644); err != nil {
		t.Fatal(err)
	}
	both := []string{"org.kvmmanager.agent.0", "org.qemu.guest_agent.0"}
	tests := []struct {
		name      string
		dom       fakeDomain
		wantCDs   []fakeDisk
		wantLines []string
		wantLive  bool
	}{
		{
			name:    "bare q35 domain gets both channels and a SATA CD-ROM",
			dom:     fakeDomain{machine: "pc-q35-7.2", disks: []fakeDisk{{"disk", "vda", "virtio", "/img/root.qcow2"}}},
			wantCDs: []fakeDisk{{"cdrom", "sda", "sata", iso}},
			wantLines: []string{"channel org.kvmmanager.agent.0: added", "channel org.qemu.guest_agent.0: added",
				"CD-ROM sda (sata): attached with " + iso},
		},
		{
			name:      "i440fx domain gets an IDE CD-ROM after its IDE disk",
			dom:       fakeDomain{machine: "pc-i440fx-7.2", disks: []fakeDisk{{"disk", "hda", "ide", "/img/root.qcow2"}}},
			wantCDs:   []fakeDisk{{"cdrom", "hdb", "ide", iso}},
			wantLines: []string{"CD-ROM hdb (ide): attached"},
		},
		{
			name: "virt-manager domain: QGA channel there, empty CD-ROM gets the ISO",
			dom: fakeDomain{machine: "pc-q35-7.2", channels: []string{"org.qemu.guest_agent.0"},
				disks: []fakeDisk{{"cdrom", "sda", "sata", ""}}},
			wantCDs: []fakeDisk{{"cdrom", "sda", "sata", iso}},
			wantLines: []string{"channel org.kvmmanager.agent.0: added", "channel org.qemu.guest_agent.0: already there",
				"CD-ROM sda: inserted " + iso},
		},
		{
			name: "running domain: another ISO is replaced live and persistently",
			dom: fakeDomain{machine: "pc-q35-7.2", running: true, channels: both,
				disks: []fakeDisk{{"cdrom", "sdb", "sata", "/iso/debian.iso"}}},
			wantCDs:   []fakeDisk{{"cdrom", "sdb", "sata", iso}},
			wantLines: []string{"CD-ROM sdb: replaced /iso/debian.iso with " + iso},
			wantLive:  true,
		},
		{
			name:      "running domain without channels: told to power cycle",
			dom:       fakeDomain{machine: "pc-q35-7.2", running: true, disks: []fakeDisk{{"cdrom", "sda", "sata", iso}}},
			wantCDs:   []fakeDisk{{"cdrom", "sda", "sata", iso}},
			wantLines: []string{"powered off and started again", "CD-ROM sda: already holds " + iso},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.dom
			d.name = "vm1"
			code, out, errOut := runSetup(t, &d, images, "setup", "vm1")
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			for _, l := range tt.wantLines {
				if !strings.Contains(out, l) {
					t.Errorf("output lacks %q:\n%s", l, out)
				}
			}
			if got := slices.Sorted(slices.Values(d.channels)); !slices.Equal(got, both) {
				t.Errorf("channels %q, want %q", got, both)
			}
			var cds []fakeDisk
			for _, disk := range d.disks {
				if disk.device == "cdrom" {
					cds = append(cds, disk)
				}
			}
			if !slices.Equal(cds, tt.wantCDs) {
				t.Errorf("CD-ROMs %+v, want %+v", cds, tt.wantCDs)
			}
			for _, c := range d.calls {
				if c[0] == "change-media" && slices.Contains(c, "--live") != tt.wantLive {
					t.Errorf("change-media %q: live %v, want %v", c, !tt.wantLive, tt.wantLive)
				}
				if (c[0] == "attach-device" || c[0] == "attach-disk") && (!slices.Contains(c, "--config") || slices.Contains(c, "--live")) {
					t.Errorf("%q: want --config only", c)
				}
			}

			// Idempotent: a second run only reads.
			before := len(d.calls)
			code, out, errOut = runSetup(t, &d, images, "setup", "vm1")
			if code != exitOK {
				t.Fatalf("second run: exit %d: %s", code, errOut)
			}
			for _, c := range d.calls[before:] {
				if c[0] != "dumpxml" && c[0] != "domstate" {
					t.Errorf("second run changed the domain: %q\n%s", c, out)
				}
			}
			if !strings.Contains(out, "already holds") || strings.Count(out, "already there") != 2 {
				t.Errorf("second run output:\n%s", out)
			}
		})
	}
}

func TestSetupErrors(t *testing.T) {
	images := t.TempDir()
	tests := []struct {
		name    string
		args    []string
		iso     bool
		fail    string
		want    string
		wantRun int
	}{
		{"no ISO installed", []string{"setup", "vm1"}, false, "", "iso install PATH-TO-ISO", exitAgentError},
		{"unknown domain", []string{"setup", "vm2"}, true, "", "failed to get domain 'vm2'", exitAgentError},
		{"attach fails", []string{"setup", "vm1"}, true, "attach-device", "setup vm1: virsh attach-device: error: operation failed", exitAgentError},
		{"no domain", []string{"setup"}, true, "", "setup takes one DOMAIN", exitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(filepath.Join(images, isoName))
			if tt.iso {
				if err := os.WriteFile(filepath.Join(images, isoName), []byte("iso"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			d := &fakeDomain{name: "vm1", machine: "q35", fail: tt.fail}
			code, _, errOut := runSetup(t, d, images, tt.args...)
			if code != tt.wantRun || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d, stderr %q; want exit %d with %q", code, errOut, tt.wantRun, tt.want)
			}
		})
	}
	t.Run("--no-iso needs no ISO and leaves the CD-ROM", func(t *testing.T) {
		os.Remove(filepath.Join(images, isoName))
		d := &fakeDomain{name: "vm1", machine: "q35"}
		code, _, errOut := runSetup(t, d, images, "setup", "--no-iso", "vm1")
		if code != exitOK || len(d.channels) != 2 || len(d.disks) != 0 {
			t.Errorf("exit %d (%s), channels %q, disks %+v", code, errOut, d.channels, d.disks)
		}
	})
}

// isoImage returns bytes that look like an ISO 9660 image.
func isoImage(fill byte) []byte {
	b := bytes.Repeat([]byte{fill}, 0x9000)
	copy(b[isoMagicOffset:], isoMagic)
	return b
}

func TestISOInstall(t *testing.T) {
	images := t.TempDir()
	src := t.TempDir()
	good := filepath.Join(src, "agent.iso")
	if err := os.WriteFile(good, isoImage(1), 0o600); err != nil {
		t.Fatal(err)
	}
	notISO := filepath.Join(src, "notes.txt")
	if err := os.WriteFile(notISO, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(images, isoName)
	old := isoImage(2)
	if err := os.WriteFile(dst, old, 0o644); err != nil {
		t.Fatal(err)
	}
	d := &fakeDomain{}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
		want     []byte // dst afterwards
	}{
		{"not an ISO keeps the old one", []string{"iso", "install", notISO}, exitAgentError, "is not an ISO 9660 image", old},
		{"missing source keeps the old one", []string{"iso", "install", filepath.Join(src, "none.iso")}, exitAgentError, "no such file", old},
		{"unknown subcommand", []string{"iso", "remove"}, exitUsage, `unknown iso subcommand "remove"`, old},
		{"install replaces", []string{"iso", "install", good}, exitOK, "", isoImage(1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := runSetup(t, d, images, tt.args...)
			if code != tt.wantCode || !strings.Contains(errOut, tt.wantErr) {
				t.Errorf("exit %d, stderr %q; want %d with %q", code, errOut, tt.wantCode, tt.wantErr)
			}
			got, err := os.ReadFile(dst)
			if err != nil || !bytes.Equal(got, tt.want) {
				t.Errorf("%s afterwards: %d bytes, %v; want %d bytes", dst, len(got), err, len(tt.want))
			}
			fi, err := os.Stat(dst)
			if err != nil || fi.Mode().Perm() != 0o644 {
				t.Errorf("%s mode %v, %v; want 0644", dst, fi.Mode(), err)
			}
			if left, _ := filepath.Glob(filepath.Join(images, ".*")); len(left) != 0 {
				t.Errorf("temporary files left: %q", left)
			}
		})
	}
}
