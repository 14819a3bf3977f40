package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat;
// it is 100 on every Linux architecture Go supports.
const clockTicks = 100

// process is an agent under test, started in the foreground.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	waitErr error
}

// startProcess starts argv with stdout and stderr appended to logPath and
// waits until it accepts connections on socket.
func startProcess(ctx context.Context, name string, argv []string, logPath, socket string) (*process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", logPath, err)
	}
	defer logf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("unix", socket, time.Second)
		if err == nil {
			c.Close()
			return p, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("%s exited before listening on %s (%v): %s", name, socket, p.waitErr, p.logTail())
		case <-ctx.Done():
			p.stop(0)
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop(0)
			return nil, fmt.Errorf("%s did not listen on %s within 15s: %s", name, socket, p.logTail())
		}
	}
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// logTail returns the end of the process's log, for error messages.
func (p *process) logTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return err.Error()
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// stop sends SIGTERM and waits up to grace for the process to exit; then
// it kills the process group. It reports whether the kill was needed.
func (p *process) stop(grace time.Duration) (killed bool) {
	select {
	case <-p.done:
		return false
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return false
	case <-time.After(grace):
	}
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	<-p.done
	return true
}

// memStatus is the memory of a process from /proc/PID/status, in KiB.
type memStatus struct {
	RSS, HWM, RSSAnon, RSSFile int64
}

// memory reads the process's memory figures.
func (p *process) memory() (memStatus, error) {
	path := fmt.Sprintf("/proc/%d/status", p.pid())
	b, err := os.ReadFile(path)
	if err != nil {
		return memStatus{}, fmt.Errorf("read %s: %w", path, err)
	}
	return memStatus{
		RSS: parseStatusKB(b, "VmRSS"), HWM: parseStatusKB(b, "VmHWM"),
		RSSAnon: parseStatusKB(b, "RssAnon"), RSSFile: parseStatusKB(b, "RssFile"),
	}, nil
}

// parseStatusKB returns the kB value of key in /proc/PID/status content, or
// -1 when absent.
func parseStatusKB(status []byte, key string) int64 {
	for line := range bytes.Lines(status) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok || string(k) != key {
			continue
		}
		f := strings.Fields(string(v))
		if len(f) == 0 {
			return -1
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return -1
		}
		return n
	}
	return -1
}

// resetPeak resets VmHWM to the current RSS (Linux 4.0+), so that a later
// VmHWM is the peak of what ran in between.
func (p *process) resetPeak() error {
	path := fmt.Sprintf("/proc/%d/clear_refs", p.pid())
	if err := os.WriteFile(path, []byte("5"), 0); err != nil {
		return fmt.Errorf("reset peak RSS via %s: %w", path, err)
	}
	return nil
}

// cpuTime returns the user plus system CPU time the process has used, all
// threads included (children are not).
func (p *process) cpuTime() (time.Duration, error) {
	path := fmt.Sprintf("/proc/%d/stat", p.pid())
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	ticks, err := parseStatCPU(b)
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", path, err)
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// parseStatCPU returns utime+stime (fields 14 and 15) of /proc/PID/stat.
// The command name, field 2, may contain spaces and parentheses, so fields
// are counted after its last ')'.
func parseStatCPU(stat []byte) (int64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("no command name")
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("%d fields after the command name", len(f))
	}
	u, err := strconv.ParseInt(f[11], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("utime: %w", err)
	}
	s, err := strconv.ParseInt(f[12], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("stime: %w", err)
	}
	return u + s, nil
}
