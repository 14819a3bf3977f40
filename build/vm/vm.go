// Package vm boots QEMU virtual machines for the end-to-end tests: direct
// kernel boot (-kernel/-initrd/-append, no firmware), a serial console written
// to a file, no network, an optional virtio-blk disk, an optional CD-ROM on
// virtio-scsi, an optional virtio-serial port org.kvmmanager.agent.0 backed by
// a unix socket that QEMU listens on, and a QMP socket for changing the CD.
//
// Every Machine has a watchdog: QEMU is killed when Config.Timeout passes or
// when the context given to Start is cancelled, and Wait then returns an error
// naming the console log. A Machine never outlives the process that started
// it (the child gets SIGKILL when its parent dies).
package vm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// AccelEnv is the environment variable that overrides the default
// accelerator ("tcg") when Config.Accel is empty; see envAccel.
const AccelEnv = "KVMMANAGER_QEMU_ACCEL"

// envAccel is the accelerator for a guest of arch when $KVMMANAGER_QEMU_ACCEL
// is env: KVM only runs guests of the host's own architecture, so "kvm"
// means TCG for the others (CI sets "kvm" when the runner has /dev/kvm).
func envAccel(env, arch string) string {
	if env == "" || (env == "kvm" && arch != runtime.GOARCH) {
		return "tcg"
	}
	return env
}

// DefaultTimeout is the watchdog timeout used when Config.Timeout is zero.
const DefaultTimeout = 5 * time.Minute

// Config describes one virtual machine.
type Config struct {
	// Arch is the Debian/Go architecture name of the guest: "amd64" or "arm64".
	Arch string
	// Kernel, Initrd and Append are QEMU's -kernel, -initrd and -append.
	// Initrd may be empty. Append should name the serial console
	// (see SerialConsole).
	Kernel, Initrd, Append string
	// MemoryMiB defaults to 512, CPUs to 1.
	MemoryMiB, CPUs int
	// Disk is an image attached as virtio-blk (the guest's /dev/vda);
	// "" attaches no disk. Its format is DiskFormat, or qcow2 when the
	// name ends in ".qcow2" and raw otherwise.
	Disk       string
	DiskFormat string
	// CDROM is an ISO image attached as a SCSI CD-ROM on virtio-scsi (the
	// guest's /dev/sr0); "" attaches an empty CD-ROM drive, so that
	// ChangeCDROM can insert one later.
	CDROM string
	// AgentSocket, if set, adds the virtio-serial port
	// org.kvmmanager.agent.0 backed by a unix socket at this path on which
	// QEMU listens (server=on, wait=off). The path must be short enough for
	// a unix socket (under 108 bytes).
	AgentSocket string
	// NoReboot makes QEMU exit when the guest reboots (-no-reboot).
	NoReboot bool
	// Timeout is the watchdog: QEMU is killed and Wait fails after it.
	// Zero means DefaultTimeout.
	Timeout time.Duration
	// ConsoleLog is the file that receives the serial console. When empty,
	// a file named kvmmanager-vm-*.log is created in the system temporary
	// directory and kept, so that it can be read after a failure.
	ConsoleLog string
	// Accel is QEMU's accelerator ("tcg", "kvm"); "" means the value of
	// $KVMMANAGER_QEMU_ACCEL, or "tcg".
	Accel string
	// ExtraArgs are appended to QEMU's command line.
	ExtraArgs []string
}

// Machine is a running (or finished) QEMU process.
type Machine struct {
	cfg     Config
	cmd     *exec.Cmd
	runDir  string // holds the QMP socket; removed when QEMU exits
	qmpPath string
	console string
	stderr  *tailBuffer

	done     chan struct{}
	err      error // set before done is closed
	mu       sync.Mutex
	killedBy string // why QEMU was killed, "" if it exited by itself
	qmpMu    sync.Mutex
}

// QEMUBinary returns the name of the QEMU system emulator for arch.
func QEMUBinary(arch string) (string, error) {
	switch arch {
	case "amd64":
		return "qemu-system-x86_64", nil
	case "arm64":
		return "qemu-system-aarch64", nil
	}
	return "", fmt.Errorf("vm: unsupported architecture %q (want amd64 or arm64)", arch)
}

// SerialConsole returns the kernel's name of the first serial port of the
// machine QEMU emulates for arch, for console= on the kernel command line.
func SerialConsole(arch string) string {
	if arch == "arm64" {
		return "ttyAMA0"
	}
	return "ttyS0"
}

// Start launches QEMU as cfg describes and returns at once; the guest boots
// in the background. QEMU is killed when ctx is cancelled or cfg.Timeout
// passes; call Wait (or Kill) so that its resources are released. When Start
// returns, QEMU listens on Config.AgentSocket.
func Start(ctx context.Context, cfg Config) (*Machine, error) {
	if cfg.Kernel == "" {
		return nil, errors.New("vm: Config.Kernel is required")
	}
	bin, err := QEMUBinary(cfg.Arch)
	if err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MemoryMiB == 0 {
		cfg.MemoryMiB = 512
	}
	if cfg.CPUs == 0 {
		cfg.CPUs = 1
	}
	if cfg.Accel == "" {
		cfg.Accel = envAccel(os.Getenv(AccelEnv), cfg.Arch)
	}
	if len(cfg.AgentSocket) >= 108 {
		return nil, fmt.Errorf("vm: agent socket path %s is %d bytes, too long for a unix socket", cfg.AgentSocket, len(cfg.AgentSocket))
	}
	for _, f := range []string{cfg.Kernel, cfg.Initrd, cfg.Disk, cfg.CDROM} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("vm: %w", err)
		}
	}

	m := &Machine{cfg: cfg, done: make(chan struct{}), stderr: &tailBuffer{max: 16 << 10}}
	if m.console = cfg.ConsoleLog; m.console == "" {
		f, err := os.CreateTemp("", "kvmmanager-vm-*.log")
		if err != nil {
			return nil, fmt.Errorf("vm: create console log: %w", err)
		}
		m.console = f.Name()
		f.Close()
	}
	if m.console, err = filepath.Abs(m.console); err != nil {
		return nil, fmt.Errorf("vm: console log path: %w", err)
	}
	// A short directory: unix socket paths are limited to 108 bytes.
	if m.runDir, err = os.MkdirTemp("", "kvmvm"); err != nil {
		return nil, fmt.Errorf("vm: create run directory: %w", err)
	}
	m.qmpPath = filepath.Join(m.runDir, "qmp.sock")

	m.cmd = exec.Command(bin, m.args()...)
	m.cmd.Stdout = m.stderr
	m.cmd.Stderr = m.stderr
	setParentDeathSignal(m.cmd)
	if err := m.cmd.Start(); err != nil {
		os.RemoveAll(m.runDir)
		return nil, fmt.Errorf("vm: start %s: %w", bin, err)
	}
	go m.supervise(ctx)
	if err := m.waitSockets(); err != nil {
		m.Kill()
		return nil, err
	}
	return m, nil
}

// socketWait bounds how long Start waits for QEMU to create its sockets.
const socketWait = 30 * time.Second

// waitSockets waits until QEMU listens on the QMP and agent sockets, so
// that callers can connect as soon as Start returns.
func (m *Machine) waitSockets() error {
	paths := []string{m.qmpPath}
	if m.cfg.AgentSocket != "" {
		paths = append(paths, m.cfg.AgentSocket)
	}
	deadline := time.Now().Add(socketWait)
	for _, p := range paths {
		for {
			if _, err := os.Stat(p); err == nil {
				break
			}
			select {
			case <-m.done:
				return fmt.Errorf("vm: qemu exited before creating %s: %w", p, m.err)
			case <-time.After(20 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("vm: qemu did not create %s within %s; console log: %s", p, socketWait, m.console)
			}
		}
	}
	return nil
}

// args builds QEMU's command line.
func (m *Machine) args() []string {
	c := m.cfg
	var a []string
	add := func(s ...string) { a = append(a, s...) }
	cpu := "max"
	if c.Accel == "kvm" {
		cpu = "host"
	}
	switch c.Arch {
	case "amd64":
		add("-machine", "q35,accel="+c.Accel, "-cpu", cpu)
	case "arm64":
		if cpu == "max" {
			// The architected pointer-authentication algorithm is very
			// slow under TCG; the implementation-defined one is not.
			cpu = "max,pauth-impdef=on"
		}
		add("-machine", "virt,accel="+c.Accel, "-cpu", cpu)
	}
	add("-m", strconv.Itoa(c.MemoryMiB), "-smp", strconv.Itoa(c.CPUs))
	add("-display", "none", "-vga", "none", "-monitor", "none", "-nodefaults")
	add("-serial", "file:"+m.console)
	add("-nic", "none")
	add("-qmp", "unix:"+m.qmpPath+",server=on,wait=off")
	add("-kernel", c.Kernel)
	if c.Initrd != "" {
		add("-initrd", c.Initrd)
	}
	if c.Append != "" {
		add("-append", c.Append)
	}
	if c.NoReboot {
		add("-no-reboot")
	}
	if c.Disk != "" {
		format := c.DiskFormat
		if format == "" {
			format = "raw"
			if strings.HasSuffix(c.Disk, ".qcow2") {
				format = "qcow2"
			}
		}
		add("-drive", "if=none,id=disk,format="+format+",file="+qemuEscape(c.Disk))
		add("-device", "virtio-blk-pci,drive=disk")
	}
	add("-device", "virtio-scsi-pci,id=scsi")
	if c.CDROM != "" {
		add("-drive", "if=none,id=cd,media=cdrom,format=raw,readonly=on,file="+qemuEscape(c.CDROM))
	} else {
		add("-drive", "if=none,id=cd,media=cdrom,readonly=on")
	}
	add("-device", "scsi-cd,bus=scsi.0,drive=cd,id=cdrom")
	if c.AgentSocket != "" {
		add("-device", "virtio-serial-pci,id=vser")
		add("-chardev", "socket,id="+agentChardevID+",path="+qemuEscape(c.AgentSocket)+",server=on,wait=off")
		add("-device", "virtserialport,bus=vser.0,chardev="+agentChardevID+",id="+agentPortID+",name="+protocol.PortName)
	}
	return append(a, c.ExtraArgs...)
}

// qemuEscape doubles commas, QEMU's escape inside option values.
func qemuEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// supervise waits for QEMU, killing it on timeout or cancellation.
func (m *Machine) supervise(ctx context.Context) {
	exited := make(chan error, 1)
	go func() { exited <- m.cmd.Wait() }()
	timer := time.NewTimer(m.cfg.Timeout)
	defer timer.Stop()

	var werr error
	select {
	case werr = <-exited:
	case <-timer.C:
		m.kill(fmt.Sprintf("the watchdog (timeout %s)", m.cfg.Timeout))
		werr = <-exited
	case <-ctx.Done():
		m.kill(fmt.Sprintf("context cancellation (%v)", ctx.Err()))
		werr = <-exited
	}
	os.RemoveAll(m.runDir)

	m.mu.Lock()
	reason := m.killedBy
	m.mu.Unlock()
	switch {
	case reason != "":
		m.err = fmt.Errorf("vm %s: qemu killed by %s; console log: %s", m.cfg.Arch, reason, m.console)
	case werr != nil:
		m.err = fmt.Errorf("vm %s: qemu: %w: %s; console log: %s", m.cfg.Arch, werr, strings.TrimSpace(m.stderr.String()), m.console)
	}
	close(m.done)
}

func (m *Machine) kill(reason string) {
	m.mu.Lock()
	if m.killedBy == "" {
		m.killedBy = reason
	}
	m.mu.Unlock()
	_ = m.cmd.Process.Kill()
}

// Wait waits for QEMU to exit. It returns nil when QEMU exited by itself
// with status 0 (the guest powered off, or rebooted under NoReboot), and an
// error naming the console log when QEMU failed or was killed.
func (m *Machine) Wait() error {
	<-m.done
	return m.err
}

// Done is closed when QEMU has exited.
func (m *Machine) Done() <-chan struct{} { return m.done }

// Kill kills QEMU (if it still runs) and waits for it to exit.
func (m *Machine) Kill() {
	select {
	case <-m.done:
		return
	default:
	}
	m.kill("Kill")
	<-m.done
}

// ConsoleLog returns the path of the serial console log.
func (m *Machine) ConsoleLog() string { return m.console }

// Stderr returns the last bytes QEMU wrote to its stdout and stderr.
func (m *Machine) Stderr() string { return m.stderr.String() }

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf bytes.Buffer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf.Write(p)
	if over := t.buf.Len() - t.max; over > 0 {
		t.buf.Next(over)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.String()
}
