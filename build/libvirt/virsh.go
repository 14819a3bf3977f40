package libvirt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// SystemURI is libvirt's system instance, where the tests define domains.
const SystemURI = "qemu:///system"

// Virsh runs virsh commands against one libvirt connection, each bounded by
// Timeout.
type Virsh struct {
	URI     string
	Timeout time.Duration
}

// Result is one virsh run: the command line as typed and what it printed.
type Result struct {
	Command string
	Stdout  string
	Stderr  string
	Err     error // nil when virsh exited 0
}

// Output is the result as a transcript shows it: stdout, then stderr and
// the exit status when it failed.
func (r Result) Output() string {
	out := strings.TrimRight(r.Stdout, "\n")
	if e := strings.TrimSpace(r.Stderr); e != "" {
		if out != "" {
			out += "\n"
		}
		out += e
	}
	if r.Err != nil {
		if out != "" {
			out += "\n"
		}
		out += "(" + r.Err.Error() + ")"
	}
	return out
}

// Run runs `virsh -c URI ARGS...`.
func (v Virsh) Run(ctx context.Context, args ...string) Result {
	timeout := v.Timeout
	if timeout == 0 {
		timeout = time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "virsh", append([]string{"-c", v.URI}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %s", timeout)
	} else if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		err = fmt.Errorf("exit status %d", ee.ExitCode())
	}
	return Result{Command: "virsh " + quoteArgs(args), Stdout: stdout.String(), Stderr: stderr.String(), Err: err}
}

// Must runs a virsh command that must succeed and returns its stdout.
func (v Virsh) Must(ctx context.Context, args ...string) (string, error) {
	r := v.Run(ctx, args...)
	if r.Err != nil {
		return r.Stdout, fmt.Errorf("%s: %w: %s", r.Command, r.Err, strings.TrimSpace(r.Stderr))
	}
	return r.Stdout, nil
}

// quoteArgs writes args as a shell would need them.
func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r))
		}) < 0 {
			q[i] = a
			continue
		}
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
