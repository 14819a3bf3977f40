package transport

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestFindPort(t *testing.T) {
	tests := []struct {
		name  string
		dev   []string          // files under the fake /dev
		links map[string]string // symlinks under the fake /dev
		sys   map[string]string // port -> sysfs name
		want  string            // relative to the fake /dev; "" = not found
	}{
		{"udev symlink", []string{"vport2p1"}, map[string]string{"virtio-ports/org.kvmmanager.agent.0": "../vport2p1"},
			map[string]string{"vport2p1": "org.kvmmanager.agent.0"}, "virtio-ports/org.kvmmanager.agent.0"},
		{"sysfs name without udev", []string{"vport0p1", "vport1p1", "vport1p2"}, nil,
			map[string]string{"vport0p1": "org.qemu.guest_agent.0", "vport1p1": "com.example.other", "vport1p2": "org.kvmmanager.agent.0\n"}, "vport1p2"},
		{"sysfs names a port whose node is missing", []string{"vport0p1"}, nil,
			map[string]string{"vport3p1": "org.kvmmanager.agent.0"}, "vport0p1"},
		{"fallback vport0p1 without sysfs", []string{"vport0p1"}, nil, nil, "vport0p1"},
		{"vport0p1 of another agent is not taken", []string{"vport0p1"}, nil,
			map[string]string{"vport0p1": "org.qemu.guest_agent.0"}, ""},
		{"nothing", nil, nil, nil, ""},
		{"dangling udev symlink", nil, map[string]string{"virtio-ports/org.kvmmanager.agent.0": "../vport9p9"}, nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dev, sys := t.TempDir(), t.TempDir()
			for _, f := range tc.dev {
				if err := os.WriteFile(filepath.Join(dev, f), nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			for l, target := range tc.links {
				os.MkdirAll(filepath.Dir(filepath.Join(dev, l)), 0o755)
				if err := os.Symlink(target, filepath.Join(dev, l)); err != nil {
					t.Fatal(err)
				}
			}
			for p, name := range tc.sys {
				d := filepath.Join(sys, "class", "virtio-ports", p)
				os.MkdirAll(d, 0o755)
				if err := os.WriteFile(filepath.Join(d, "name"), []byte(name), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := FindPort(dev, sys)
			if tc.want == "" {
				if !errors.Is(err, ErrNoPort) {
					t.Errorf("FindPort = %q, %v; want ErrNoPort", got, err)
				}
				return
			}
			if want := filepath.Join(dev, tc.want); got != want || err != nil {
				t.Errorf("FindPort = %q, %v; want %q", got, err, want)
			}
		})
	}
}
