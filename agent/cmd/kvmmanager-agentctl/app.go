package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/pflag"

	"github.com/kvmmanager/guest-agent/agent/client"
	"github.com/kvmmanager/guest-agent/agent/protocol"
	"github.com/kvmmanager/guest-agent/agent/version"
)

const prog = "kvmmanager-agentctl"

// Exit statuses.
const (
	exitOK          = 0
	exitAgentError  = 1
	exitUsage       = 2
	exitUnreachable = 3
)

// env is what a run sees of the outside world.
type env struct {
	stdin   io.Reader
	stdout  io.Writer
	stderr  io.Writer
	locator locator
	// virsh runs virsh (setup); imagesDir is libvirt's image directory
	// (iso install, setup's default ISO).
	virsh     virshFunc
	imagesDir string
}

// app holds the global flags and the streams of one run.
type app struct {
	env
	socket  string
	domain  string
	timeout time.Duration
	json    bool
}

// command is one subcommand. setup defines its flags on fs and returns the
// action that runs with the parsed values.
type command struct {
	name     string
	args     string // synopsis of the arguments
	summary  string
	offline  bool // does not talk to the agent
	rawArgs  bool // flags stop at the first argument (exec)
	setup    func(a *app, fs *pflag.FlagSet) action
	nargs    func(n int) bool
	argsHelp string
}

type action func(ctx context.Context, args []string) error

// usageError is a command line mistake: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// exitCode ends the run with a given status and no message (exec).
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// localError is a failure on the host side (stdin, stdout): exit status 1.
type localError struct{ err error }

func (e *localError) Error() string { return e.err.Error() }
func (e *localError) Unwrap() error { return e.err }

func run(ctx context.Context, args []string, e env) int {
	a := &app{env: e}
	global := pflag.NewFlagSet(prog, pflag.ContinueOnError)
	global.SetOutput(io.Discard)
	global.SetInterspersed(false)
	global.StringVarP(&a.socket, "socket", "s", "", "agent socket `PATH` (the unix socket behind the VM's virtio-serial port)")
	global.StringVarP(&a.domain, "domain", "d", "", "libvirt domain `NAME`: use its org.kvmmanager.agent.0 channel socket")
	global.DurationVarP(&a.timeout, "timeout", "t", 10*time.Second, "how long to wait for the agent")
	global.BoolVar(&a.json, "json", false, "print the agent's raw JSON result")
	help := global.BoolP("help", "h", false, "show help")
	showVersion := global.Bool("version", false, "print the version and exit")

	if err := global.Parse(args); err != nil {
		return a.usage(err, "")
	}
	if *showVersion {
		fmt.Fprintf(a.stdout, "%s %s (commit %s, protocol %s)\n", prog, version.Version, version.Commit, protocol.Version)
		return exitOK
	}
	rest := global.Args()
	if *help || len(rest) == 0 {
		if len(rest) == 0 && !*help {
			return a.usage(usagef("missing command"), "")
		}
		a.mainHelp(a.stdout, global)
		return exitOK
	}
	cmd, ok := commandByName(rest[0])
	if !ok {
		return a.usage(usagef("unknown command %q", rest[0]), "")
	}

	fs := pflag.NewFlagSet(prog+" "+cmd.name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	act := cmd.setup(a, fs)
	ownFlags := fs.FlagUsages()
	fs.AddFlagSet(global) // global flags after the command too; the command's own win (exec --timeout)
	fs.SetInterspersed(!cmd.rawArgs)
	if err := fs.Parse(rest[1:]); err != nil {
		return a.usage(err, cmd.name)
	}
	if *help {
		a.commandHelp(a.stdout, cmd, ownFlags, global)
		return exitOK
	}
	if cmd.nargs != nil && !cmd.nargs(fs.NArg()) {
		return a.usage(usagef("%s takes %s", cmd.name, cmd.argsHelp), cmd.name)
	}
	if !cmd.offline {
		if a.socket != "" && a.domain != "" {
			return a.usage(usagef("give --socket or --domain, not both"), cmd.name)
		}
		if a.socket == "" && a.domain == "" {
			return a.usage(usagef("give the agent's socket with --socket PATH or a libvirt domain with --domain NAME"), cmd.name)
		}
	}
	return a.finish(act(ctx, fs.Args()))
}

// finish maps the outcome of an action to an exit status.
func (a *app) finish(err error) int {
	if err == nil {
		return exitOK
	}
	var code exitCode
	var perr *protocol.Error
	var uerr *usageError
	var lerr *localError
	switch {
	case errors.As(err, &code):
		return int(code)
	case errors.As(err, &uerr):
		return a.usage(err, "")
	case errors.As(err, &perr):
		fmt.Fprintf(a.stderr, "%s: agent error %d (%s): %s\n", prog, perr.Code, codeName(perr.Code), perr.Message)
		return exitAgentError
	case errors.As(err, &lerr):
		fmt.Fprintf(a.stderr, "%s: %v\n", prog, err)
		return exitAgentError
	}
	msg := err.Error()
	if errors.Is(err, context.DeadlineExceeded) {
		msg += fmt.Sprintf(" (no answer within %s; is the agent running in the guest?)", a.timeout)
	}
	fmt.Fprintf(a.stderr, "%s: agent unreachable: %s\n", prog, msg)
	return exitUnreachable
}

func (a *app) usage(err error, cmd string) int {
	fmt.Fprintf(a.stderr, "%s: %v\n", prog, err)
	if cmd != "" {
		fmt.Fprintf(a.stderr, "Run '%s %s --help' for usage.\n", prog, cmd)
	} else {
		fmt.Fprintf(a.stderr, "Run '%s --help' for usage.\n", prog)
	}
	return exitUsage
}

func (a *app) mainHelp(w io.Writer, global *pflag.FlagSet) {
	fmt.Fprintf(w, "Usage: %s [--socket PATH | --domain NAME] [flags] COMMAND [ARGS]\n\n", prog)
	fmt.Fprintf(w, "Drives the kvmmanager guest agent of a VM from the host.\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nFlags:\n%s\n", global.FlagUsages())
	fmt.Fprintf(w, "Exit status: 0 success, 1 the agent answered with an error, 2 usage,\n"+
		"3 agent unreachable or no answer in time; exec exits with the remote status.\n")
	fmt.Fprintf(w, "Run '%s COMMAND --help' for a command's flags.\n", prog)
}

func (a *app) commandHelp(w io.Writer, c command, ownFlags string, global *pflag.FlagSet) {
	fmt.Fprintf(w, "Usage: %s [global flags] %s", prog, c.name)
	if c.args != "" {
		fmt.Fprintf(w, " %s", c.args)
	}
	fmt.Fprintf(w, "\n\n%s\n", c.summary)
	if ownFlags != "" {
		fmt.Fprintf(w, "\nFlags:\n%s", ownFlags)
	}
	fmt.Fprintf(w, "\nGlobal flags (before or after the command; the command's own flags win):\n%s", global.FlagUsages())
}

// connect dials the agent (--socket, or the socket of --domain).
func (a *app) connect(ctx context.Context) (*client.Client, error) {
	return a.dial(ctx, a.timeout)
}

// dial dials the agent (--socket, or the socket of --domain) within
// --timeout; each call on the client is bounded by callTimeout.
func (a *app) dial(ctx context.Context, callTimeout time.Duration) (*client.Client, error) {
	path := a.socket
	if path == "" {
		p, err := a.locator.socketFor(ctx, a.domain)
		if err != nil {
			return nil, err
		}
		path = p
	}
	dctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	return client.Dial(dctx, path, client.WithCallTimeout(callTimeout))
}

// call connects, runs f with a context bounded by --timeout plus extra, and
// closes the connection.
func (a *app) call(ctx context.Context, extra time.Duration, f func(ctx context.Context, c *client.Client) error) error {
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	cctx, cancel := context.WithTimeout(ctx, a.timeout+extra)
	defer cancel()
	return f(cctx, c)
}

// codeName names a protocol error code.
func codeName(code int) string {
	switch code {
	case protocol.CodeParseError:
		return "parse error"
	case protocol.CodeInvalidRequest:
		return "invalid request"
	case protocol.CodeMethodNotFound:
		return "method not found"
	case protocol.CodeInvalidParams:
		return "invalid params"
	case protocol.CodeInternalError:
		return "internal error"
	case protocol.CodeCommandFailed:
		return "command failed"
	case protocol.CodePermissionDenied:
		return "permission denied"
	case protocol.CodeNotFound:
		return "not found"
	case protocol.CodeTimeout:
		return "timeout"
	}
	return "error"
}

func exactly(n int) func(int) bool { return func(got int) bool { return got == n } }
func atMost(n int) func(int) bool  { return func(got int) bool { return got <= n } }
func atLeast(n int) func(int) bool { return func(got int) bool { return got >= n } }

func commandByName(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}
