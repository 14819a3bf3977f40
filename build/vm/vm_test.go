//go:build vmtest

package vm_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvmmanager/guest-agent/build/initramfs"
	"github.com/kvmmanager/guest-agent/build/iso"
	"github.com/kvmmanager/guest-agent/build/testenv"
	"github.com/kvmmanager/guest-agent/build/vm"
)

// hostKernel returns the host's Debian cloud kernel, which boots an amd64
// guest without any module (the tests here need no device driver).
func hostKernel(t *testing.T) string {
	t.Helper()
	testenv.NeedCommands(t, "qemu-system-x86_64")
	k, _ := filepath.Glob("/boot/vmlinuz-*-cloud-amd64")
	if len(k) == 0 {
		testenv.Unavailable(t, "no /boot/vmlinuz-*-cloud-amd64 (apt-get install linux-image-cloud-amd64)")
	}
	return k[len(k)-1]
}

// scriptInitrd writes an initramfs holding the host's static busybox and
// /init running script.
func scriptInitrd(t *testing.T, script string) string {
	t.Helper()
	testenv.NeedFile(t, "/bin/busybox")
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	var a initramfs.Archive
	for _, err := range []error{
		a.File("bin/busybox", 0o755, bb),
		a.Symlink("bin/sh", "busybox"),
		a.File("init", 0o755, []byte("#!/bin/sh\n"+script)),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if _, err := a.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "initrd.cpio")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPowerOffEndsQEMU(t *testing.T) {
	kernel := hostKernel(t)
	initrd := scriptInitrd(t, "echo MARKER-$((6*7))\n/bin/busybox poweroff -f\n")
	for _, noReboot := range []bool{false, true} {
		m, err := vm.Start(context.Background(), vm.Config{
			Arch: "amd64", Kernel: kernel, Initrd: initrd, NoReboot: noReboot,
			Append:     "console=ttyS0 quiet panic=-1",
			ConsoleLog: filepath.Join(t.TempDir(), "console.log"),
			Timeout:    3 * time.Minute,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Wait(); err != nil {
			t.Fatalf("NoReboot=%v: %v", noReboot, err)
		}
		log, err := os.ReadFile(m.ConsoleLog())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(log, []byte("MARKER-42")) {
			t.Errorf("NoReboot=%v: console log %s lacks the line /init printed:\n%s", noReboot, m.ConsoleLog(), log)
		}
	}
}

func TestRebootEndsQEMUUnderNoReboot(t *testing.T) {
	kernel := hostKernel(t)
	initrd := scriptInitrd(t, "/bin/busybox reboot -f\n")
	m, err := vm.Start(context.Background(), vm.Config{
		Arch: "amd64", Kernel: kernel, Initrd: initrd, NoReboot: true,
		Append: "console=ttyS0 quiet", Timeout: 3 * time.Minute,
		ConsoleLog: filepath.Join(t.TempDir(), "console.log"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Wait(); err != nil {
		t.Fatal(err)
	}
}

// hangingMachine boots a kernel with no initramfs: it panics for want of
// a root file system and, with panic=0, hangs there.
func hangingMachine(t *testing.T, ctx context.Context, timeout time.Duration) *vm.Machine {
	kernel := hostKernel(t)
	m, err := vm.Start(ctx, vm.Config{
		Arch: "amd64", Kernel: kernel, Append: "console=ttyS0 panic=0",
		Timeout: timeout, ConsoleLog: filepath.Join(t.TempDir(), "console.log"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Kill)
	return m
}

func TestWatchdogAndCancelKillQEMU(t *testing.T) {
	t.Run("watchdog", func(t *testing.T) {
		m := hangingMachine(t, context.Background(), 2*time.Second)
		err := m.Wait()
		if err == nil || !strings.Contains(err.Error(), "watchdog") || !strings.Contains(err.Error(), m.ConsoleLog()) {
			t.Fatalf("Wait() = %v, want a watchdog error naming %s", err, m.ConsoleLog())
		}
	})
	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		m := hangingMachine(t, ctx, time.Minute)
		cancel()
		err := m.Wait()
		if err == nil || !strings.Contains(err.Error(), context.Canceled.Error()) {
			t.Fatalf("Wait() = %v, want a cancellation error", err)
		}
	})
	t.Run("kill", func(t *testing.T) {
		m := hangingMachine(t, context.Background(), time.Minute)
		m.Kill()
		select {
		case <-m.Done():
		default:
			t.Fatal("Done not closed after Kill")
		}
		if err := m.Wait(); err == nil {
			t.Fatal("Wait() = nil after Kill")
		}
	})
}

func TestChangeCDROM(t *testing.T) {
	m := hangingMachine(t, context.Background(), time.Minute)
	iso := filepath.Join(t.TempDir(), "new.iso")
	if err := os.WriteFile(iso, make([]byte, 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.ChangeCDROM(iso); err != nil {
		t.Fatalf("ChangeCDROM(%s): %v", iso, err)
	}
	if _, _, err := m.WatchAgentPort(); err == nil || !strings.Contains(err.Error(), "no agent port") {
		t.Errorf("WatchAgentPort on a machine without an agent port = %v, want an error saying so", err)
	}
	missing := filepath.Join(t.TempDir(), "missing.iso")
	if err := m.ChangeCDROM(missing); err == nil || !strings.Contains(err.Error(), "missing.iso") {
		t.Fatalf("ChangeCDROM(%s) = %v, want an error naming the file", missing, err)
	}
	m.Kill()
	if err := m.ChangeCDROM(iso); err == nil {
		t.Fatal("ChangeCDROM after exit succeeded")
	}
}

func TestStartRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  vm.Config
	}{
		{"no kernel", vm.Config{Arch: "amd64"}},
		{"bad arch", vm.Config{Arch: "riscv64", Kernel: "/dev/null"}},
		{"missing kernel", vm.Config{Arch: "amd64", Kernel: "/nonexistent/vmlinuz"}},
		{"long socket", vm.Config{Arch: "amd64", Kernel: "/dev/null", AgentSocket: "/" + strings.Repeat("x", 120)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := vm.Start(context.Background(), tt.cfg)
			if err == nil {
				m.Kill()
				t.Fatal("Start succeeded")
			}
			if errors.Is(err, context.Canceled) {
				t.Fatal(err)
			}
		})
	}
}

// echoPort is a stand-in agent: it answers every line on the agent port
// with the line prefixed by "guest:".
const echoPort = `#!/bin/sh
p=/dev/virtio-ports/org.kvmmanager.agent.0
while true; do
	exec 3<>"$p"
	while read -r line <&3; do echo "guest:$line" >&3; done
	exec 3<&-
	sleep 0.2
done
`

// checkPortWatch checks, once the guest has answered on its port, that the
// watch saw the guest open the port (during the boot, not before the watch)
// and that QMP serves other commands once the watch is stopped.
func checkPortWatch(t *testing.T, m *vm.Machine, opened <-chan vm.PortOpen, stop func()) {
	t.Helper()
	select {
	case p := <-opened:
		if p.Already || p.At.After(time.Now()) {
			t.Errorf("port opened %+v, want a moment of this boot seen as an event", p)
		}
	case <-time.After(10 * time.Second):
		t.Error("the guest answered on its port, but the watch never saw the port open")
	}
	stop()
	stop() // idempotent
	if err := m.ChangeCDROM(m.ConsoleLog()); err != nil {
		t.Errorf("QMP after the watch stopped: %v", err)
	}
}

// TestAgentSocketReachesGuestPort boots the host's kernel with the test
// initramfs and a CD holding a stand-in agent, and talks to it through the
// unix socket: the virtio-serial port exists in the guest under its name,
// on the socket given in Config.AgentSocket; WatchAgentPort sees the guest
// open it.
func TestAgentSocketReachesGuestPort(t *testing.T) {
	kernel := hostKernel(t)
	release := strings.TrimPrefix(filepath.Base(kernel), "vmlinuz-")
	testenv.NeedFile(t, "/lib/modules/"+release+"/modules.builtin")
	testenv.NeedFile(t, "/bin/busybox")
	dir := t.TempDir()
	initrd := filepath.Join(dir, "initrd")
	k := &initramfs.Kernel{Arch: "amd64", Release: release, Image: kernel, Modules: "/lib/modules/" + release}
	if err := initramfs.Build(initrd, initramfs.Options{Arch: "amd64", Kernel: k, Busybox: "/bin/busybox"}); err != nil {
		t.Fatal(err)
	}
	cd := filepath.Join(dir, "cd.iso")
	entries := []iso.Entry{{Path: "linux-amd64/kvmmanager-agent", Data: []byte(echoPort)}, {Path: "config.json", Data: []byte("{}\n")}}
	if err := iso.Write(cd, entries, iso.Options{Time: time.Unix(1700000000, 0)}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "agent.sock")
	m, err := vm.Start(context.Background(), vm.Config{
		Arch: "amd64", Kernel: kernel, Initrd: initrd, CDROM: cd, AgentSocket: sock, NoReboot: true,
		Append: "console=ttyS0 quiet panic=-1", Timeout: 3 * time.Minute,
		ConsoleLog: filepath.Join(dir, "console.log"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Kill()
	opened, stopWatch, err := m.WatchAgentPort()
	if err != nil {
		t.Fatal(err)
	}
	defer stopWatch()
	conn, err := net.Dial("unix", sock) // Start returns once QEMU listens
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	for {
		// Lines sent before the guest opens the port may be lost; repeat.
		if _, err := fmt.Fprintf(conn, "hello\n"); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		line, err := r.ReadString('\n')
		if err == nil {
			if line != "guest:hello\n" {
				t.Fatalf("guest answered %q, want %q", line, "guest:hello\n")
			}
			checkPortWatch(t, m, opened, stopWatch)
			return
		}
		select {
		case <-m.Done():
			t.Fatalf("guest ended before answering: %v", m.Wait())
		default:
		}
	}
}
