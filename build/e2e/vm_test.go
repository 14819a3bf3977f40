//go:build vmtest

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvmmanager/guest-agent/agent/client"
	"github.com/kvmmanager/guest-agent/build/initramfs"
	"github.com/kvmmanager/guest-agent/build/pipeline"
	"github.com/kvmmanager/guest-agent/build/testenv"
	"github.com/kvmmanager/guest-agent/build/vm"
)

// bootTimeout is the watchdog of one guest: boot, every check, power off.
const bootTimeout = 7 * time.Minute

// checkTimeout bounds one check (the longest takes a few seconds).
const checkTimeout = 90 * time.Second

// powerOffBound is how long QEMU may take to exit by itself after the
// agent accepted a shutdown or reboot request (issue 5).
const powerOffBound = 30 * time.Second

// boot is one guest boot of the matrix.
type boot struct {
	arch  string
	link  bool   // init creates /dev/virtio-ports/<name>; false: the agent must use sysfs
	power string // "reboot" or "shutdown": how the boot ends
}

// Every architecture boots once with the /dev/virtio-ports link and once
// without it, and ends once by reboot and once by shutdown.
var matrix = []boot{
	{"amd64", true, "reboot"},
	{"amd64", false, "shutdown"},
	{"arm64", false, "reboot"},
	{"arm64", true, "shutdown"},
}

// guestArch is what uname -m says in a guest of each Debian architecture.
var guestArch = map[string]string{"amd64": "x86_64", "arm64": "aarch64"}

// machine is what the checks of one boot need.
type machine struct {
	boot
	kernel  *initramfs.Kernel
	version string // the version the ISO was built with
	socket  string
	vm      *vm.Machine
	client  *client.Client
}

func TestVM(t *testing.T) {
	testenv.NeedCommands(t, "qemu-system-x86_64", "qemu-system-aarch64", "apt-get", "apt-cache", "dpkg-deb")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()

	root := testenv.RepoRoot(t)
	opts := pipeline.Options{Root: root, Out: testWriter{t}}
	info, err := pipeline.Info(opts)
	if err != nil {
		t.Fatal(err)
	}
	isoPath, err := pipeline.ISO(ctx, opts)
	if err != nil {
		t.Fatalf("build the ISO: %v", err)
	}

	// Logs and sockets live in one directory that is kept when the test
	// fails, so that the console logs can be read.
	work, err := os.MkdirTemp("", "kvme2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kept the console logs and initramfs images in %s", work)
			return
		}
		os.RemoveAll(work)
	})

	cache, err := initramfs.DefaultCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	guests := map[string]guest{}
	for _, arch := range []string{"amd64", "arm64"} {
		g, err := prepareGuest(ctx, cache, work, arch, root)
		if err != nil {
			testenv.Unavailable(t, "%s guest: %v", arch, err)
			return
		}
		guests[arch] = g
	}

	// The architectures boot in parallel (one TCG guest per core); the
	// boots of one architecture run one after the other.
	var wg sync.WaitGroup
	for _, arch := range []string{"amd64", "arm64"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, b := range matrix {
				if b.arch != arch {
					continue
				}
				name := fmt.Sprintf("%s/link=%v/%s", b.arch, b.link, b.power)
				m := &machine{boot: b, kernel: guests[arch].kernel, version: info.Version,
					socket: filepath.Join(work, fmt.Sprintf("agent%d.sock", i))}
				runBoot(ctx, t, name, m, guests[arch].initrd, isoPath, filepath.Join(work, fmt.Sprintf("console-%s-%d.log", arch, i)))
			}
		}()
	}
	wg.Wait()
}

// guest is the kernel and initramfs of one architecture.
type guest struct {
	kernel *initramfs.Kernel
	initrd string
}

func prepareGuest(ctx context.Context, cache, work, arch, root string) (guest, error) {
	k, err := initramfs.FetchKernel(ctx, cache, arch)
	if err != nil {
		return guest{}, err
	}
	bb, err := initramfs.FetchBusybox(ctx, cache, arch)
	if err != nil {
		return guest{}, err
	}
	initrd := filepath.Join(work, "initrd-"+arch+".cpio")
	cfg, err := testConfig(root)
	if err != nil {
		return guest{}, err
	}
	if err := initramfs.Build(initrd, initramfs.Options{Arch: arch, Kernel: k, Busybox: bb, Config: cfg}); err != nil {
		return guest{}, err
	}
	return guest{kernel: k, initrd: initrd}, nil
}

// runBoot boots one guest and runs every check against it as a subtest.
// Subtests run in parallel with the other architecture's, so failures are
// reported per boot; the subtests of one boot run in order.
func runBoot(ctx context.Context, t *testing.T, name string, m *machine, initrd, isoPath, console string) {
	t.Run(name, func(t *testing.T) {
		appendLine := "console=" + vm.SerialConsole(m.arch) + " loglevel=4 panic=-1"
		if !m.link {
			appendLine += " " + initramfs.NoLinkFlag
		}
		disk := ""
		if m.link {
			// The protocol 1.1 checks' boot: the test config and an ext4
			// disk to freeze (proto11_test.go).
			appendLine += " " + initramfs.TestConfigFlag
			disk = strings.TrimSuffix(console, ".log") + ".ext4"
			if out, err := osexec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", disk, "64M").CombinedOutput(); err != nil {
				t.Fatalf("mkfs.ext4 %s: %v: %s", disk, err, out)
			}
		}
		started := time.Now()
		var err error
		m.vm, err = vm.Start(ctx, vm.Config{
			Arch: m.arch, Kernel: m.kernel.Image, Initrd: initrd, Append: appendLine,
			CDROM: isoPath, AgentSocket: m.socket, NoReboot: true, Disk: disk, DiskFormat: "raw",
			Timeout: bootTimeout, ConsoleLog: console,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			m.vm.Kill()
			if t.Failed() {
				t.Logf("serial console log: %s\n%s", m.vm.ConsoleLog(), consoleTail(m.vm.ConsoleLog(), 40))
			}
		}()

		m.client, err = client.Dial(ctx, m.socket)
		if err != nil {
			t.Fatal(err)
		}
		defer m.client.Close()
		readyCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		err = m.client.WaitReady(readyCtx)
		cancel()
		if err != nil {
			t.Fatalf("agent never answered: %v (qemu: %v)", err, exitState(m.vm))
		}
		t.Logf("boot to first ping: %s", time.Since(started).Round(10*time.Millisecond))

		for _, c := range checks {
			if c.linkOnly && !m.link {
				continue
			}
			// A bound per check, so that a lost reply fails that check
			// instead of waiting for the watchdog.
			cctx, cancel := context.WithTimeout(ctx, checkTimeout)
			ok := t.Run(c.name, func(t *testing.T) { c.run(cctx, t, m) })
			cancel()
			if !ok && c.fatal {
				t.FailNow()
			}
		}
	})
}

func exitState(m *vm.Machine) string {
	select {
	case <-m.Done():
		return fmt.Sprintf("exited: %v", m.Wait())
	default:
		return "still running"
	}
}

// consoleTail returns the last n lines of the console log.
func consoleTail(p string, n int) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// testWriter sends the pipeline's progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// testFreezeBound is the guests' fsfreeze_timeout_seconds in the test
// config: the agent thaws by itself after it.
const testFreezeBound = 5

// testConfig is the shipped packaging/config.json with what the protocol
// 1.1 checks need: a short freeze bound (the auto-thaw is waited for) and
// account changes allowed (SSH keys, password).
func testConfig(root string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(root, "packaging", "config.json"))
	if err != nil {
		return nil, err
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, fmt.Errorf("packaging/config.json: %w", err)
	}
	cfg["fsfreeze_timeout_seconds"] = testFreezeBound
	cfg["allow_account_changes"] = true
	return json.MarshalIndent(cfg, "", "  ")
}
