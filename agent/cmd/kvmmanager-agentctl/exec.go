package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/kvmmanager/guest-agent/agent/client"
	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// exec's protocol 1.1 forms: a background command (exec_start) started and
// left (--background), or followed to its end (--follow), and the
// subcommands "exec status ID [--follow]" and "exec kill ID". A guest
// program called status or kill runs with "exec -- status".

const execSynopsis = "[--timeout SECONDS] [--cwd DIR] [--] COMMAND [ARGS...]\n" +
	"       exec --background|--follow [--stdin] [--env NAME=VALUE]... [--timeout SECONDS] [--cwd DIR] [--] COMMAND [ARGS...]\n" +
	"       exec status ID [--follow]\n" +
	"       exec kill ID"

func setupExecAll(a *app, fs *pflag.FlagSet) action {
	foreground := setupExec(a, fs)
	background := fs.Bool("background", false, "start COMMAND in the background (exec_start, protocol 1.1), print its ID and return; "+
		"--timeout is then capped by the agent's max_background_seconds instead of command_timeout_seconds")
	follow := fs.BoolP("follow", "f", false, "start COMMAND in the background and stream its output until it exits (for commands longer than command_timeout_seconds)")
	stdin := fs.Bool("stdin", false, "with --background or --follow: send this program's stdin to the command (at most max_file_size_bytes)")
	envs := fs.StringArray("env", nil, "with --background or --follow: add `NAME=VALUE` to the command's environment (refused by an agent with its command whitelist on)")
	timeout := fs.Lookup("timeout")
	cwd := fs.Lookup("cwd")
	return func(ctx context.Context, args []string) error {
		if !*background && !*follow {
			if *stdin || len(*envs) > 0 {
				return usagef("exec --stdin and --env need --background or --follow")
			}
			switch cmd := args[0]; {
			case fs.ArgsLenAtDash() == 0: // "exec -- status": a guest program
			case cmd == "status":
				return a.execStatus(ctx, args[1:])
			case cmd == "kill":
				return a.execKill(ctx, args[1:])
			}
			return foreground(ctx, args)
		}
		if *background && *follow {
			return usagef("exec: give --background or --follow, not both")
		}
		secs, _ := strconv.Atoi(timeout.Value.String())
		if secs < 0 {
			return usagef("exec --timeout must be positive")
		}
		p := protocol.ExecStartParams{Command: args[0], Args: args[1:], Env: *envs, WorkingDirectory: cwd.Value.String()}
		if secs > 0 {
			p.TimeoutSeconds = &secs
		}
		if *stdin {
			data, err := io.ReadAll(io.LimitReader(a.stdin, maxStdin+1))
			if err != nil {
				return &localError{fmt.Errorf("read stdin: %w", err)}
			}
			if len(data) > maxStdin {
				return &localError{fmt.Errorf("stdin is larger than %d bytes", maxStdin)}
			}
			s := encodeBase64(data)
			p.Stdin, p.StdinEncoding = &s, protocol.EncodingBase64
		}
		c, err := a.connect(ctx)
		if err != nil {
			return err
		}
		defer c.Close()
		sctx, cancel := context.WithTimeout(ctx, a.timeout)
		r, err := c.ExecStart(sctx, p)
		cancel()
		if err != nil {
			return err
		}
		if *background {
			if a.json {
				return a.printJSON(r)
			}
			fmt.Fprintf(a.stdout, "started background command %d (pid %d, timeout %ds)\n", r.ID, r.PID, r.TimeoutSeconds)
			fmt.Fprintf(a.stdout, "follow it with: %s exec status %d --follow   stop it with: %s exec kill %d\n", prog, r.ID, prog, r.ID)
			return nil
		}
		return a.followJob(ctx, c, r.ID)
	}
}

// followJob streams a background command's output and exits with its
// status. Interrupting agentctl (Ctrl-C) stops following, not the command.
func (a *app) followJob(ctx context.Context, c *client.Client, id int64) error {
	st, err := c.ExecFollow(ctx, id, a.stdout, a.stderr, func(stream string, n int64) {
		fmt.Fprintf(a.stderr, "\n%s: %d bytes of %s were lost (output faster than this host read it; the agent keeps max_output_bytes)\n", prog, n, stream)
	})
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(a.stderr, "%s: stopped following; background command %d goes on (exec kill %d stops it)\n", prog, id, id)
		}
		return err
	}
	if a.json {
		st.Stdout.Data, st.Stderr.Data = "", ""
		if err := a.printJSON(st); err != nil {
			return err
		}
	}
	switch {
	case st.TimedOut:
		fmt.Fprintf(a.stderr, "%s: background command %d was killed after its timeout\n", prog, id)
	case st.Killed:
		fmt.Fprintf(a.stderr, "%s: background command %d was killed (exec kill)\n", prog, id)
	}
	if st.ExitCode == nil {
		return remoteStatus(a, -1)
	}
	return remoteStatus(a, *st.ExitCode)
}

func parseJobID(sub string, args []string) (int64, bool, error) {
	follow := false
	var rest []string
	for _, s := range args {
		if s == "--follow" || s == "-f" {
			follow = true
			continue
		}
		rest = append(rest, s)
	}
	if len(rest) != 1 || (follow && sub != "status") {
		if sub == "status" {
			return 0, false, usagef("exec status takes one ID (and --follow)")
		}
		return 0, false, usagef("exec %s takes one ID", sub)
	}
	id, err := strconv.ParseInt(rest[0], 10, 64)
	if err != nil || id < 1 {
		return 0, false, usagef("exec %s: ID %q is not a background command number", sub, rest[0])
	}
	return id, follow, nil
}

func (a *app) execStatus(ctx context.Context, args []string) error {
	id, follow, err := parseJobID("status", args)
	if err != nil {
		return err
	}
	c, err := a.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if follow {
		return a.followJob(ctx, c, id)
	}
	sctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	// Sizes only: the output is streamed with --follow.
	st, err := c.ExecStatus(sctx, protocol.ExecStatusParams{ID: id, MaxBytes: 1})
	if err != nil {
		return err
	}
	if a.json {
		st.Stdout.Data, st.Stderr.Data = "", ""
		return a.printJSON(st)
	}
	t := newTable(a.stdout)
	fmt.Fprintf(t, "ID\t%d\n", st.ID)
	fmt.Fprintf(t, "PID\t%d\n", st.PID)
	fmt.Fprintf(t, "Command\t%s\n", strings.Join(append([]string{st.Command}, st.Args...), " "))
	fmt.Fprintf(t, "Started\t%s\n", time.Unix(st.StartedAt, 0).UTC().Format(time.RFC3339))
	run := (time.Duration(st.DurationMS) * time.Millisecond).Round(100 * time.Millisecond)
	state := fmt.Sprintf("running for %s", run)
	if !st.Running {
		state = fmt.Sprintf("exited after %s", run)
		switch {
		case st.Signal != nil:
			state += fmt.Sprintf(", killed by signal %d", *st.Signal)
		case st.ExitCode != nil:
			state += fmt.Sprintf(", exit code %d", *st.ExitCode)
		}
		if st.TimedOut {
			state += " (timeout)"
		}
		if st.Killed {
			state += " (exec kill)"
		}
	}
	fmt.Fprintf(t, "State\t%s\n", state)
	fmt.Fprintf(t, "Stdout\t%s\n", streamSize(st.Stdout))
	fmt.Fprintf(t, "Stderr\t%s\n", streamSize(st.Stderr))
	return t.Flush()
}

func streamSize(s protocol.Stream) string {
	if !s.Captured {
		return "not captured"
	}
	return fmt.Sprintf("%d bytes", s.Total)
}

func (a *app) execKill(ctx context.Context, args []string) error {
	id, _, err := parseJobID("kill", args)
	if err != nil {
		return err
	}
	return a.call(ctx, 5*time.Second, func(ctx context.Context, c *client.Client) error {
		r, err := c.ExecKill(ctx, id)
		if err != nil {
			return err
		}
		if a.json {
			return a.printJSON(r)
		}
		if r.Killed {
			fmt.Fprintf(a.stdout, "killed background command %d and every process it started\n", id)
		} else {
			fmt.Fprintf(a.stdout, "background command %d had already exited\n", id)
		}
		return nil
	})
}

// isTerminalWriter reports whether w is a terminal.
func isTerminalWriter(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isTerminal(f.Fd())
}
