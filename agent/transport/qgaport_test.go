//go:build !windows

package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const qgaPortName = "org.qemu.guest_agent.0"

// A port other than the agent's own is found by its name only: the
// vport0p1 fallback never takes it.
func TestFindPortNamed(t *testing.T) {
	tests := []struct {
		name string
		dev  []string
		link bool              // udev link for the QGA port to vport1p1
		sys  map[string]string // port -> sysfs name
		want string
	}{
		{"udev link", []string{"vport1p1"}, true, nil, "virtio-ports/" + qgaPortName},
		{"sysfs name", []string{"vport0p1", "vport0p2"}, false, map[string]string{"vport0p1": "org.kvmmanager.agent.0", "vport0p2": qgaPortName + "\n"}, "vport0p2"},
		{"no fallback to an unnamed vport0p1", []string{"vport0p1"}, false, nil, ""},
		{"only the agent's own port", []string{"vport0p1"}, false, map[string]string{"vport0p1": "org.kvmmanager.agent.0"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dev, sys := t.TempDir(), t.TempDir()
			for _, f := range tc.dev {
				touch(t, filepath.Join(dev, f))
			}
			if tc.link {
				os.MkdirAll(filepath.Join(dev, "virtio-ports"), 0o755)
				if err := os.Symlink("../vport1p1", filepath.Join(dev, "virtio-ports", qgaPortName)); err != nil {
					t.Fatal(err)
				}
			}
			for p, name := range tc.sys {
				d := filepath.Join(sys, "class", "virtio-ports", p)
				os.MkdirAll(d, 0o755)
				os.WriteFile(filepath.Join(d, "name"), []byte(name), 0o644)
			}
			got, err := FindPortNamed(qgaPortName, dev, sys)
			if tc.want == "" {
				if !errors.Is(err, ErrNoPort) || !strings.Contains(err.Error(), qgaPortName) {
					t.Errorf("FindPortNamed = %q, %v; want ErrNoPort naming the port", got, err)
				}
				return
			}
			if want := filepath.Join(dev, tc.want); got != want || err != nil {
				t.Errorf("FindPortNamed = %q, %v; want %q", got, err, want)
			}
		})
	}
}

// qgaDevice serves a fake /dev with the QGA port, opening it with open.
func qgaDevice(t *testing.T, yield func() string, open func(string) (port, error)) (chan time.Duration, *syncBuffer, func()) {
	t.Helper()
	dev := t.TempDir()
	os.MkdirAll(filepath.Join(dev, "virtio-ports"), 0o755)
	touch(t, filepath.Join(dev, "virtio-ports", qgaPortName))
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	d, sleeps, _ := testDevice(ctx, DeviceOptions{DevRoot: dev, SysRoot: t.TempDir(), PortName: qgaPortName, Yield: yield}, logs, open)
	done := make(chan error, 1)
	go func() { done <- d.serve(ctx, testServer(nil)) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}
	return sleeps, logs, stop
}

// While qemu-ga runs the port is left alone: not opened, one warning, a
// recheck a minute apart; once qemu-ga is gone the agent takes the port.
func TestDeviceYieldsToQemuGA(t *testing.T) {
	reason := make(chan string, 1)
	reason <- "qemu-ga is running (pid 7)"
	cur := ""
	yield := func() string {
		select {
		case cur = <-reason:
		default:
		}
		return cur
	}
	opened := make(chan string, 1)
	sleeps, logs, stop := qgaDevice(t, yield, func(p string) (port, error) {
		select { // never blocks the device's loop
		case opened <- p:
		default:
		}
		return nil, &fs.PathError{Op: "open", Path: p, Err: syscall.ENODEV}
	})
	for i := range 3 {
		if d := <-sleeps; d != defaultYieldRecheck {
			t.Errorf("recheck %d after %v, want %v", i, d, defaultYieldRecheck)
		}
	}
	select {
	case p := <-opened:
		t.Fatalf("opened %s while qemu-ga runs", p)
	default:
	}
	reason <- ""
	// The turn under way may still sleep a recheck; then the port is
	// opened (and fails here, which is retried).
	for len(opened) == 0 {
		<-sleeps
	}
	if p := <-opened; !strings.HasSuffix(p, qgaPortName) {
		t.Errorf("opened %s", p)
	}
	stop()
	if n := strings.Count(logs.String(), "Leaving the virtio-serial port to another agent"); n != 1 {
		t.Errorf("logged %d times, want once:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "qemu-ga is running (pid 7)") {
		t.Errorf("reason not logged:\n%s", logs.String())
	}
}

// A port another process holds (EBUSY) is left alone with one warning and a
// slow recheck, not retried in a fast loop.
func TestDeviceLeavesBusyPort(t *testing.T) {
	opens := 0
	sleeps, logs, stop := qgaDevice(t, nil, func(p string) (port, error) {
		opens++
		return nil, &fs.PathError{Op: "open", Path: p, Err: syscall.EBUSY}
	})
	for i := range 4 {
		if d := <-sleeps; d != defaultYieldRecheck {
			t.Errorf("retry %d after %v, want %v", i, d, defaultYieldRecheck)
		}
	}
	stop()
	if n := strings.Count(logs.String(), "held by another process"); n != 1 {
		t.Errorf("logged %d times, want once:\n%s", n, logs.String())
	}
	if opens < 4 || opens > 5 {
		t.Errorf("%d opens over 4 rechecks", opens)
	}
}

// hostGoneServer records OnHostGone calls of the port's connection.
type hostGoneServer struct{ gone, read chan struct{} }

func (s *hostGoneServer) ServeConn(ctx context.Context, rw io.ReadWriter) error {
	hw, ok := rw.(interface{ OnHostGone(func()) })
	if !ok {
		return fmt.Errorf("%T has no OnHostGone", rw)
	}
	hw.OnHostGone(func() { s.gone <- struct{}{} })
	buf := make([]byte, 64)
	for {
		if _, err := rw.Read(buf); err != nil {
			return err
		}
		s.read <- struct{}{}
	}
}

// The session hears of each host that leaves, not of hosts that never came.
func TestPortConnOnHostGone(t *testing.T) {
	sim := newSimPort()
	dir := t.TempDir()
	touch(t, filepath.Join(dir, "vport0p1"))
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, _, waits := testDevice(ctx, DeviceOptions{Path: filepath.Join(dir, "vport0p1")}, logs, func(string) (port, error) { return sim, nil })
	srv := &hostGoneServer{gone: make(chan struct{}, 4), read: make(chan struct{}, 4)}
	done := make(chan error, 1)
	go func() { done <- d.serve(ctx, srv) }()
	<-waits // no host yet
	if len(srv.gone) != 0 {
		t.Fatal("host gone before any host came")
	}
	for range 2 {
		sim.setConnected(true)
		sim.send("x")
		<-srv.read
		sim.setConnected(false)
		select {
		case <-srv.gone:
		case <-time.After(10 * time.Second):
			t.Fatal("no host-gone call after the host left")
		}
	}
	cancel()
	<-done
}
