package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// qgaPortName is the QEMU guest agent's port, which the agent also serves.
const qgaPortName = "org.qemu.guest_agent.0"

// isoName is the agent ISO's file name in libvirt's image directory, where
// KVM Manager's "Mount Agent ISO" takes it from.
const isoName = "kvmmanager-guest-agent.iso"

// defaultImagesDir is libvirt's default storage pool directory.
const defaultImagesDir = "/var/lib/libvirt/images"

// virshFunc runs virsh with args and returns its standard output; a failure
// carries virsh's message.
type virshFunc func(ctx context.Context, args ...string) ([]byte, error)

func runVirsh(ctx context.Context, args ...string) ([]byte, error) {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "virsh", args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return nil, fmt.Errorf("virsh %s: %s", strings.Join(args, " "), msg)
		}
		return nil, fmt.Errorf("virsh %s: %w", strings.Join(args, " "), err)
	}
	return out, nil
}

func setupSetup(a *app, fs *pflag.FlagSet) action {
	iso := fs.String("iso", "", "agent ISO `PATH` to insert (default "+defaultImagesDir+"/"+isoName+")")
	noISO := fs.Bool("no-iso", false, "only add the channels; leave the CD-ROM alone")
	return func(ctx context.Context, args []string) error {
		path := *iso
		if path == "" {
			path = filepath.Join(a.imagesDir, isoName)
		}
		if !*noISO {
			abs, err := filepath.Abs(path)
			if err != nil {
				return &localError{fmt.Errorf("agent ISO %s: %w", path, err)}
			}
			path = abs
			if _, err := os.Stat(path); err != nil {
				return &localError{fmt.Errorf("agent ISO: %w (install it first: %s iso install PATH-TO-ISO)", err, prog)}
			}
		} else {
			path = ""
		}
		return a.setupDomain(ctx, args[0], path)
	}
}

// setupXML is what setup reads of a domain's persistent definition.
type setupXML struct {
	OS struct {
		Type struct {
			Machine string `xml:"machine,attr"`
		} `xml:"type"`
	} `xml:"os"`
	Channels []struct {
		Target struct {
			Type string `xml:"type,attr"`
			Name string `xml:"name,attr"`
		} `xml:"target"`
	} `xml:"devices>channel"`
	Disks []struct {
		Device string `xml:"device,attr"`
		Source struct {
			File string `xml:"file,attr"`
		} `xml:"source"`
		Target struct {
			Dev string `xml:"dev,attr"`
			Bus string `xml:"bus,attr"`
		} `xml:"target"`
	} `xml:"devices>disk"`
}

func (d setupXML) hasChannel(name string) bool {
	for _, c := range d.Channels {
		if c.Target.Type == "virtio" && c.Target.Name == name {
			return true
		}
	}
	return false
}

// setupDomain adds the missing agent channels to domain's persistent
// definition and puts iso (unless "") in its CD-ROM, attaching one when it
// has none. Run twice, the second run changes nothing.
func (a *app) setupDomain(ctx context.Context, domain, iso string) error {
	fail := func(err error) error { return &localError{fmt.Errorf("setup %s: %w", domain, err)} }
	doc, err := a.virsh(ctx, "dumpxml", "--inactive", "--domain", domain)
	if err != nil {
		return fail(err)
	}
	var d setupXML
	if err := xml.Unmarshal(doc, &d); err != nil {
		return fail(fmt.Errorf("parse the domain XML: %w", err))
	}
	running := false
	if out, err := a.virsh(ctx, "domstate", "--domain", domain); err == nil {
		running = strings.TrimSpace(string(out)) == "running"
	}
	changed := false
	for _, port := range []string{protocol.PortName, qgaPortName} {
		if d.hasChannel(port) {
			fmt.Fprintf(a.stdout, "channel %s: already there\n", port)
			continue
		}
		if err := a.attachChannel(ctx, domain, port); err != nil {
			return fail(err)
		}
		changed = true
		fmt.Fprintf(a.stdout, "channel %s: added to the persistent definition\n", port)
	}
	if changed && running {
		fmt.Fprintf(a.stdout, "The domain is running: the new channels appear after it is powered off and started again\n"+
			"(a reboot inside the guest is not enough).\n")
	}
	if iso == "" {
		return nil
	}
	var cds []int
	for i, disk := range d.Disks {
		if disk.Device == "cdrom" {
			cds = append(cds, i)
		}
	}
	for _, i := range cds {
		if d.Disks[i].Source.File == iso {
			fmt.Fprintf(a.stdout, "CD-ROM %s: already holds %s\n", d.Disks[i].Target.Dev, iso)
			return nil
		}
	}
	live := []string{"--config"}
	if running {
		live = []string{"--live", "--config"}
	}
	if len(cds) > 0 {
		cd := d.Disks[cds[0]]
		mode := "--insert"
		if cd.Source.File != "" {
			mode = "--update"
		}
		args := append([]string{"change-media", "--domain", domain, "--path", cd.Target.Dev, "--source", iso, mode, "--force"}, live...)
		if _, err := a.virsh(ctx, args...); err != nil {
			return fail(err)
		}
		if cd.Source.File != "" {
			fmt.Fprintf(a.stdout, "CD-ROM %s: replaced %s with %s\n", cd.Target.Dev, cd.Source.File, iso)
		} else {
			fmt.Fprintf(a.stdout, "CD-ROM %s: inserted %s\n", cd.Target.Dev, iso)
		}
		return nil
	}
	bus, target, err := newCDROMTarget(d)
	if err != nil {
		return fail(err)
	}
	// A new drive cannot be hot-plugged on IDE or SATA: persistent only.
	if _, err := a.virsh(ctx, "attach-disk", "--domain", domain, "--source", iso, "--target", target,
		"--targetbus", bus, "--type", "cdrom", "--mode", "readonly", "--config"); err != nil {
		return fail(err)
	}
	fmt.Fprintf(a.stdout, "CD-ROM %s (%s): attached with %s\n", target, bus, iso)
	if running {
		fmt.Fprintf(a.stdout, "The domain is running: the new CD-ROM appears after it is powered off and started again.\n")
	}
	return nil
}

// newCDROMTarget picks the bus and the first free target name of a new
// CD-ROM: SATA on q35 machines (as virt-manager does), IDE otherwise.
func newCDROMTarget(d setupXML) (bus, target string, err error) {
	bus, prefix, n := "ide", "hd", 4
	if strings.Contains(d.OS.Type.Machine, "q35") {
		bus, prefix, n = "sata", "sd", 26
	}
	var used []string
	for _, disk := range d.Disks {
		used = append(used, disk.Target.Dev)
	}
	for i := range n {
		t := prefix + string(rune('a'+i))
		if !slices.Contains(used, t) {
			return bus, t, nil
		}
	}
	return "", "", errors.New("no free " + bus + " target for a CD-ROM")
}

// attachChannel adds a virtio channel named port (socket path chosen by
// libvirt) to domain's persistent definition.
func (a *app) attachChannel(ctx context.Context, domain, port string) error {
	f, err := os.CreateTemp("", "kvmmanager-channel-*.xml")
	if err != nil {
		return fmt.Errorf("channel %s: %w", port, err)
	}
	defer os.Remove(f.Name())
	x := fmt.Sprintf("<channel type='unix'>\n  <source mode='bind'/>\n  <target type='virtio' name='%s'/>\n</channel>\n", port)
	if _, err := f.WriteString(x); err != nil {
		f.Close()
		return fmt.Errorf("channel %s: write %s: %w", port, f.Name(), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("channel %s: write %s: %w", port, f.Name(), err)
	}
	_, err = a.virsh(ctx, "attach-device", "--domain", domain, "--file", f.Name(), "--config")
	return err
}
