package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/kvmmanager/guest-agent/agent/client"
	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// maxStdin bounds what write reads from stdin; the agent's own limit
// (max_file_size_bytes, 10 MiB by default) is lower.
const maxStdin = 64 << 20

func commands() []command {
	return append([]command{
		{name: "ping", summary: "Check that the agent answers; shows its clock and the round trip", nargs: exactly(0), argsHelp: "no arguments", setup: setupPing},
		{name: "info", summary: "Agent version, protocol version and methods (get_agent_info)", nargs: exactly(0), argsHelp: "no arguments", setup: setupInfo},
		{name: "system", summary: "Guest OS, kernel, hostname, CPUs, memory, uptime (get_system_info)", nargs: exactly(0), argsHelp: "no arguments", setup: setupSystem},
		{name: "network", summary: "Guest network interfaces and addresses (get_network_info)", nargs: exactly(0), argsHelp: "no arguments", setup: setupNetwork},
		{name: "disks", summary: "Guest filesystems and their usage (get_disk_usage)", nargs: exactly(0), argsHelp: "no arguments", setup: setupDisks},
		{name: "exec", args: execSynopsis, rawArgs: true,
			summary: "Run COMMAND in the guest (no shell); prints its output and exits with its status",
			nargs:   atLeast(1), argsHelp: "a command to run", setup: setupExecAll},
		{name: "read", args: "PATH [--base64] [--chunk BYTES]", summary: "Write the content of guest file PATH to stdout (raw bytes; --base64 prints base64 text; any size, sha256 verified)",
			nargs: exactly(1), argsHelp: "one PATH", setup: setupReadAll},
		{name: "write", args: "PATH [--mode 0644] [--create-dirs] [--chunk BYTES]", summary: "Write stdin to guest file PATH (any size, in chunks, replaced at once when complete)",
			nargs: exactly(1), argsHelp: "one PATH", setup: setupWriteAll},
		{name: "shutdown", args: "[--force] [--grace SECONDS]", summary: "Power the guest off", nargs: exactly(0), argsHelp: "no arguments", setup: setupPower(protocol.MethodShutdown)},
		{name: "reboot", args: "[--force] [--grace SECONDS]", summary: "Reboot the guest", nargs: exactly(0), argsHelp: "no arguments", setup: setupPower(protocol.MethodReboot)},
		{name: "libvirt-xml", args: "[DOMAIN]", offline: true,
			summary: "Print the libvirt <channel> element that gives a domain the agent port",
			nargs:   atMost(1), argsHelp: "at most one DOMAIN", setup: setupLibvirtXML},
		{name: "setup", args: "DOMAIN [--iso PATH] [--no-iso]", offline: true,
			summary: "Give a libvirt domain both agent channels and the agent ISO in its CD-ROM (through virsh)",
			nargs:   exactly(1), argsHelp: "one DOMAIN", setup: setupSetup},
		{name: "iso", args: "install [PATH]", offline: true,
			summary: "Copy the agent ISO (default ./" + isoName + ") to " + defaultImagesDir + "/" + isoName,
			nargs:   func(n int) bool { return n == 1 || n == 2 }, argsHelp: "install [PATH]", setup: setupISO},
	}, opsCommands()...) // protocol 1.1 guest operations (ops.go)
}

// printJSON writes v indented, for --json.
func (a *app) printJSON(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return &localError{fmt.Errorf("encode result: %w", err)}
	}
	if _, err := fmt.Fprintf(a.stdout, "%s\n", b); err != nil {
		return &localError{fmt.Errorf("write stdout: %w", err)}
	}
	return nil
}

func setupPing(a *app, _ *pflag.FlagSet) action {
	return func(ctx context.Context, _ []string) error {
		return a.call(ctx, 0, func(ctx context.Context, c *client.Client) error {
			start := time.Now()
			r, err := c.Ping(ctx)
			if err != nil {
				return err
			}
			rtt := time.Since(start)
			if a.json {
				return a.printJSON(r)
			}
			agent := time.Unix(r.Timestamp, 0).UTC()
			fmt.Fprintf(a.stdout, "pong: agent clock %s (%s the host's), round trip %s\n",
				agent.Format(time.RFC3339), skew(agent.Sub(start.Add(rtt/2))), rtt.Round(time.Microsecond))
			return nil
		})
	}
}

// skew describes a clock difference at the agent's one-second resolution.
func skew(d time.Duration) string {
	s := d.Round(time.Second)
	switch {
	case s > -2*time.Second && s < 2*time.Second:
		return "within a second of"
	case s > 0:
		return fmt.Sprintf("%s ahead of", s)
	}
	return fmt.Sprintf("%s behind", -s)
}

// The commands that ask one question without parameters and print the
// answer as a table, or as the agent's JSON with --json.
var (
	setupInfo    = setupQuery((*client.Client).AgentInfo, writeAgentInfo)
	setupSystem  = setupQuery((*client.Client).SystemInfo, writeSystemInfo)
	setupNetwork = setupQuery((*client.Client).NetworkInfo, writeNetworkInfo)
	setupDisks   = setupQuery((*client.Client).DiskUsage, writeDiskUsage)
)

// setupQuery makes the setup of a command that calls get and prints its
// result with write (or as JSON with --json).
func setupQuery[R any](get func(*client.Client, context.Context) (R, error), write func(io.Writer, R) error) func(*app, *pflag.FlagSet) action {
	return func(a *app, _ *pflag.FlagSet) action {
		return func(ctx context.Context, _ []string) error {
			return a.call(ctx, 0, func(ctx context.Context, c *client.Client) error {
				r, err := get(c, ctx)
				if err != nil {
					return err
				}
				if a.json {
					return a.printJSON(r)
				}
				return write(a.stdout, r)
			})
		}
	}
}

func setupExec(a *app, fs *pflag.FlagSet) action {
	timeout := fs.Int("timeout", 0, "remote command timeout in `SECONDS` (default: the agent's, 30, capped by its command_timeout_seconds)")
	cwd := fs.String("cwd", "", "working `DIR` of the command in the guest")
	return func(ctx context.Context, args []string) error {
		if *timeout < 0 {
			return usagef("exec --timeout must be positive")
		}
		p := protocol.ExecParams{Command: args[0], Args: args[1:], WorkingDirectory: *cwd}
		remote := client.DefaultExecTimeout
		if *timeout > 0 {
			p.TimeoutSeconds = timeout
			remote = time.Duration(*timeout) * time.Second
		}
		return a.call(ctx, remote, func(ctx context.Context, c *client.Client) error {
			r, err := c.Exec(ctx, p)
			if err != nil {
				// A command killed on its timeout comes with its output so far.
				if out, ok := client.ExecErrorOutput(err); ok && !a.json {
					io.WriteString(a.stdout, out.Stdout) //nolint:errcheck // the error below is what matters
					io.WriteString(a.stderr, out.Stderr) //nolint:errcheck // the error below is what matters
				}
				return err
			}
			if a.json {
				if err := a.printJSON(r); err != nil {
					return err
				}
			} else {
				if _, err := io.WriteString(a.stdout, r.Stdout); err != nil {
					return &localError{fmt.Errorf("write stdout: %w", err)}
				}
				io.WriteString(a.stderr, r.Stderr) //nolint:errcheck // nowhere to report it
				if r.StdoutTruncated || r.StderrTruncated {
					fmt.Fprintf(a.stderr, "%s: output truncated by the agent's max_output_bytes\n", prog)
				}
			}
			return remoteStatus(a, r.ExitCode)
		})
	}
}

// remoteStatus turns the command's exit code into ours. Codes outside
// 0..255 (a command killed by a signal is reported as negative by some
// agents) become 255, with a note.
func remoteStatus(a *app, code int) error {
	if code == 0 {
		return nil
	}
	if code < 0 || code > 255 {
		fmt.Fprintf(a.stderr, "%s: remote exit code %d\n", prog, code)
		return exitCode(255)
	}
	return exitCode(code)
}

func setupRead(a *app, fs *pflag.FlagSet) action {
	asBase64 := fs.Bool("base64", false, "print the content as base64 text instead of raw bytes")
	return func(ctx context.Context, args []string) error {
		return a.call(ctx, 0, func(ctx context.Context, c *client.Client) error {
			// Always fetched in base64, so binary files arrive intact.
			r, err := c.ReadFile(ctx, args[0], protocol.EncodingBase64)
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(r)
			}
			if *asBase64 {
				_, err = fmt.Fprintln(a.stdout, r.Content)
			} else {
				var b []byte
				b, err = decodeBase64(args[0], r)
				if err != nil {
					return err
				}
				_, err = a.stdout.Write(b)
			}
			if err != nil {
				return &localError{fmt.Errorf("write stdout: %w", err)}
			}
			return nil
		})
	}
}

func setupWrite(a *app, fs *pflag.FlagSet) action {
	mode := fs.String("mode", "", "octal permissions of the file, e.g. `0644` (default: the agent's)")
	createDirs := fs.Bool("create-dirs", false, "create missing parent directories (inside allowed_write_paths)")
	return func(ctx context.Context, args []string) error {
		if *mode != "" {
			if m, err := strconv.ParseUint(*mode, 8, 32); err != nil || m > 0o7777 {
				return usagef("write --mode %q: want octal permissions such as 0644", *mode)
			}
		}
		data, err := io.ReadAll(io.LimitReader(a.stdin, maxStdin+1))
		if err != nil {
			return &localError{fmt.Errorf("read stdin: %w", err)}
		}
		if len(data) > maxStdin {
			return &localError{fmt.Errorf("stdin is larger than %d bytes", maxStdin)}
		}
		return a.call(ctx, 0, func(ctx context.Context, c *client.Client) error {
			r, err := c.WriteFile(ctx, protocol.FileWriteParams{
				Path:        args[0],
				Content:     encodeBase64(data),
				Encoding:    protocol.EncodingBase64,
				CreateDirs:  *createDirs,
				Permissions: *mode,
			})
			if err != nil {
				return cliCreateDirs(err)
			}
			if a.json {
				return a.printJSON(r)
			}
			fmt.Fprintf(a.stdout, "wrote %d bytes to %s\n", r.BytesWritten, r.Path)
			return nil
		})
	}
}

// cliCreateDirs rewrites the agent's advice to set the create_dirs
// parameter into this command's flag, --create-dirs.
func cliCreateDirs(err error) error {
	var perr *protocol.Error
	if !errors.As(err, &perr) || !strings.Contains(perr.Message, "create_dirs") {
		return err
	}
	e := *perr
	e.Message = strings.ReplaceAll(strings.ReplaceAll(e.Message, "set create_dirs", "add --create-dirs"), " create_dirs", " --create-dirs")
	return &e
}

func setupPower(method string) func(a *app, fs *pflag.FlagSet) action {
	return func(a *app, fs *pflag.FlagSet) action {
		force := fs.Bool("force", false, "act at once (sync and reboot(2)) instead of asking the init system")
		grace := fs.Int("grace", 0, "with --force: `SECONDS` the init system gets before the agent forces it (without --grace: forced at once); without --force the agent only asks the init system, never forces")
		return func(ctx context.Context, _ []string) error {
			if *grace < 0 {
				return usagef("%s --grace must be positive", method)
			}
			p := protocol.PowerParams{Force: *force}
			if *grace > 0 {
				p.TimeoutSeconds = grace
			}
			return a.call(ctx, 0, func(ctx context.Context, c *client.Client) error {
				var r protocol.PowerResult
				var err error
				if method == protocol.MethodShutdown {
					r, err = c.Shutdown(ctx, p)
				} else {
					r, err = c.Reboot(ctx, p)
				}
				if err != nil {
					return err
				}
				if a.json {
					return a.printJSON(r)
				}
				if !r.Initiated {
					return &localError{errors.New("agent did not initiate " + method + ": " + r.Message)}
				}
				fmt.Fprintf(a.stdout, "%s initiated: %s\n", method, r.Message)
				return nil
			})
		}
	}
}

func setupLibvirtXML(a *app, _ *pflag.FlagSet) action {
	return func(_ context.Context, args []string) error {
		fmt.Fprint(a.stdout, channelXML)
		if len(args) == 1 {
			writeAttachHint(a.stderr, args[0])
		}
		return nil
	}
}
