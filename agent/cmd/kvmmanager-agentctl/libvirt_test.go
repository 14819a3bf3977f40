package main

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestChannelSource(t *testing.T) {
	tests := []struct {
		name    string
		xml     string
		want    string
		wantErr string
	}{
		{name: "running domain", want: "/var/lib/libvirt/qemu/channel/target/domain-3-vm1/org.kvmmanager.agent.0", xml: `<domain type='kvm' id='3'>
  <name>vm1</name>
  <devices>
    <channel type='unix'>
      <source mode='bind' path='/var/lib/libvirt/qemu/channel/target/domain-3-vm1/org.qemu.guest_agent.0'/>
      <target type='virtio' name='org.qemu.guest_agent.0' state='connected'/>
    </channel>
    <channel type='unix'>
      <source mode='bind' path='/var/lib/libvirt/qemu/channel/target/domain-3-vm1/org.kvmmanager.agent.0'/>
      <target type='virtio' name='org.kvmmanager.agent.0' state='disconnected'/>
      <alias name='channel1'/>
      <address type='virtio-serial' controller='0' bus='0' port='2'/>
    </channel>
  </devices>
</domain>`},
		{name: "explicit path", want: "/run/vm1-agent.sock", xml: `<domain><devices><channel type='unix'>
      <source mode='bind' path='/run/vm1-agent.sock'/><target type='virtio' name='org.kvmmanager.agent.0'/></channel></devices></domain>`},
		{name: "shut off domain", wantErr: "not running", xml: `<domain type='kvm'><devices><channel type='unix'>
      <source mode='bind'/><target type='virtio' name='org.kvmmanager.agent.0'/></channel></devices></domain>`},
		{name: "only the qemu guest agent", wantErr: "no <channel> with target name org.kvmmanager.agent.0", xml: `<domain id='1'><devices><channel type='unix'>
      <source mode='bind' path='/x'/><target type='virtio' name='org.qemu.guest_agent.0'/></channel></devices></domain>`},
		{name: "pty channel with our name is not a socket", wantErr: "no <channel>", xml: `<domain id='1'><devices><channel type='pty'>
      <source path='/dev/pts/3'/><target type='virtio' name='org.kvmmanager.agent.0'/></channel></devices></domain>`},
		{name: "not XML", wantErr: "parse domain XML", xml: `error: failed to get domain`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := channelSource([]byte(tt.xml))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// mkSocket creates a unix socket at root+rel (closed with the test).
func mkSocket(t *testing.T, root, rel string) string {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return p
}

func TestSocketForFallsBackToLibvirtPaths(t *testing.T) {
	const dir = "var/lib/libvirt/qemu/channel/target"
	noVirsh := func(context.Context, string) ([]byte, error) {
		return nil, errors.New("virsh: executable file not found")
	}
	noChannel := func(context.Context, string) ([]byte, error) {
		return []byte(`<domain id='2'><devices/></domain>`), nil
	}
	tests := []struct {
		name    string
		domain  string
		virsh   func(context.Context, string) ([]byte, error)
		setup   func(t *testing.T, root string) string // returns the expected path ("" = error)
		wantErr []string
	}{
		{name: "domain directory", domain: "vm1", virsh: noVirsh, setup: func(t *testing.T, root string) string {
			return mkSocket(t, root, dir+"/domain-7-vm1/org.kvmmanager.agent.0")
		}},
		{name: "newest of several runs", domain: "vm1", virsh: noChannel, setup: func(t *testing.T, root string) string {
			mkSocket(t, root, dir+"/domain-9-vm1/org.kvmmanager.agent.0")
			mkSocket(t, root, dir+"/domain-3-vm1/org.kvmmanager.agent.0")
			return mkSocket(t, root, dir+"/domain-12-vm1/org.kvmmanager.agent.0")
		}},
		{name: "another domain whose name ends like ours", domain: "vm1", virsh: noVirsh, setup: func(t *testing.T, root string) string {
			mkSocket(t, root, dir+"/domain-8-test-vm1/org.kvmmanager.agent.0")
			return mkSocket(t, root, dir+"/domain-2-vm1/org.kvmmanager.agent.0")
		}},
		{name: "long name cut to 20 characters", domain: "a-very-long-domain-name-indeed", virsh: noVirsh, setup: func(t *testing.T, root string) string {
			return mkSocket(t, root, dir+"/domain-1-a-very-long-domain-n/org.kvmmanager.agent.0")
		}},
		{name: "glob characters in the name", domain: "vm[1]", virsh: noVirsh, setup: func(t *testing.T, root string) string {
			mkSocket(t, root, dir+"/domain-1-vm1/org.kvmmanager.agent.0")
			return mkSocket(t, root, dir+"/domain-2-vm[1]/org.kvmmanager.agent.0")
		}},
		{name: "legacy path", domain: "vm1", virsh: noVirsh, setup: func(t *testing.T, root string) string {
			return mkSocket(t, root, dir+"/vm1.org.kvmmanager.agent.0")
		}},
		{name: "a regular file is not a socket", domain: "vm1", virsh: noVirsh, setup: func(t *testing.T, root string) string {
			p := filepath.Join(root, dir, "domain-1-vm1", "org.kvmmanager.agent.0")
			os.MkdirAll(filepath.Dir(p), 0o755)
			os.WriteFile(p, nil, 0o600)
			return ""
		}, wantErr: []string{"virsh: executable file not found", "no socket at", "domain-*-vm1"}},
		{name: "nothing", domain: "vm1", virsh: noChannel, setup: func(*testing.T, string) string { return "" },
			wantErr: []string{"no <channel> with target name", "vm1.org.kvmmanager.agent.0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Not t.TempDir(): socket paths must stay under 108 bytes.
			root, err := os.MkdirTemp("", "lv")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(root) })
			want := tt.setup(t, root)
			got, err := locator{dumpXML: tt.virsh, root: root}.socketFor(context.Background(), tt.domain)
			if want == "" {
				if err == nil {
					t.Fatalf("got %q, want an error", got)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				return
			}
			if err != nil || got != want {
				t.Fatalf("got %q, %v; want %q", got, err, want)
			}
		})
	}
}
