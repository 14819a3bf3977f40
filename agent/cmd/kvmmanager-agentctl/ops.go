package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/kvmmanager/guest-agent/agent/client"
	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// Commands of protocol 1.1's guest operations: freeze, thaw, time, users,
// memory, ssh-keys, password.

func opsCommands() []command {
	return []command{
		{name: "freeze", args: "[MOUNTPOINT...] | status", summary: "Freeze guest file systems for a consistent snapshot (all, or those given); 'freeze status' shows the state",
			setup: setupFreeze},
		{name: "thaw", summary: "Thaw the file systems frozen by freeze", nargs: exactly(0), argsHelp: "no arguments", setup: setupThaw},
		{name: "time", args: "[--sync | --from-rtc]", summary: "Show the guest clock against the host's; --sync sets it to the host's time",
			nargs: exactly(0), argsHelp: "no arguments", setup: setupTime},
		{name: "users", summary: "Users logged in to the guest (get_users)", nargs: exactly(0), argsHelp: "no arguments", setup: setupUsers},
		{name: "memory", summary: "Guest memory: total, used (without page cache), cache, available, swap", nargs: exactly(0), argsHelp: "no arguments", setup: setupMemory},
		{name: "ssh-keys", args: "list USER | add USER [KEY...] | remove USER [KEY...]",
			summary: "List, add or remove a guest user's SSH authorized keys (keys from the arguments, else one per line on stdin)",
			nargs:   atLeast(2), argsHelp: "list, add or remove and a USER", setup: setupSSHKeys},
		{name: "password", args: "USER [--crypted]", summary: "Set a guest user's password, read from stdin or a prompt without echo (never from the command line)",
			nargs: exactly(1), argsHelp: "one USER", setup: setupPassword},
	}
}

func setupFreeze(a *app, _ *pflag.FlagSet) action {
	return func(ctx context.Context, args []string) error {
		status := len(args) > 0 && args[0] == "status"
		if status && len(args) > 1 {
			return usagef("freeze status takes no arguments")
		}
		for _, mp := range args {
			if !status && !strings.HasPrefix(mp, "/") {
				return usagef("freeze: %q is not a mount point (absolute path); 'freeze status' shows the state", mp)
			}
		}
		return a.call(ctx, 2*time.Minute, func(ctx context.Context, c *client.Client) error {
			if status {
				st, err := c.FsfreezeStatus(ctx)
				if err != nil {
					return err
				}
				if a.json {
					return a.printJSON(st)
				}
				if st.Status != protocol.FsfreezeFrozen {
					fmt.Fprintf(a.stdout, "%s\n", st.Status)
					return nil
				}
				fmt.Fprintf(a.stdout, "frozen: %s (the agent thaws by itself in %.0fs)\n", strings.Join(st.Mountpoints, " "), st.AutoThawSeconds)
				return nil
			}
			r, err := c.FsfreezeFreeze(ctx, args...)
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(r)
			}
			fmt.Fprintf(a.stdout, "froze %d file systems: %s\n", r.Frozen, strings.Join(r.Mountpoints, " "))
			fmt.Fprintf(a.stdout, "writes in the guest now wait; run '%s thaw' (the agent thaws by itself after %ds)\n", prog, r.AutoThawSeconds)
			return nil
		})
	}
}

func setupThaw(a *app, _ *pflag.FlagSet) action {
	return func(ctx context.Context, _ []string) error {
		return a.call(ctx, time.Minute, func(ctx context.Context, c *client.Client) error {
			r, err := c.FsfreezeThaw(ctx)
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(r)
			}
			fmt.Fprintf(a.stdout, "thawed %d file systems\n", r.Thawed)
			return nil
		})
	}
}

func setupTime(a *app, fs *pflag.FlagSet) action {
	sync := fs.Bool("sync", false, "set the guest clock (and its RTC) to the host's time")
	fromRTC := fs.Bool("from-rtc", false, "set the guest clock from the guest's hardware clock (after a resume)")
	return func(ctx context.Context, _ []string) error {
		if *sync && *fromRTC {
			return usagef("time: give --sync or --from-rtc, not both")
		}
		return a.call(ctx, 0, func(ctx context.Context, c *client.Client) error {
			if *sync || *fromRTC {
				var tn *int64
				if *sync {
					now := time.Now().UnixNano()
					tn = &now
				}
				r, err := c.SetTime(ctx, tn)
				if err != nil {
					return err
				}
				if a.json {
					return a.printJSON(r)
				}
				rtc := ""
				if r.RTCUpdated {
					rtc = ", hardware clock too"
				}
				fmt.Fprintf(a.stdout, "guest clock set from %s to %s%s\n", r.Source, time.Unix(0, r.TimeNs).UTC().Format(time.RFC3339Nano), rtc)
				return nil
			}
			start := time.Now()
			r, err := c.GetTime(ctx)
			if err != nil {
				return err
			}
			mid := start.Add(time.Since(start) / 2)
			if a.json {
				return a.printJSON(r)
			}
			guest := time.Unix(0, r.TimeNs)
			t := newTable(a.stdout)
			fmt.Fprintf(t, "Guest\t%s\n", guest.UTC().Format(time.RFC3339Nano))
			fmt.Fprintf(t, "Host\t%s\n", mid.UTC().Format(time.RFC3339Nano))
			d := guest.Sub(mid).Round(time.Millisecond)
			off := fmt.Sprintf("%s ahead of the host", d)
			if d < 0 {
				off = fmt.Sprintf("%s behind the host", -d)
			}
			fmt.Fprintf(t, "Offset\t%s\n", off)
			src := r.ClockSource
			if src == "" {
				src = "unknown"
			}
			fmt.Fprintf(t, "Clock source\t%s\n", src)
			return t.Flush()
		})
	}
}

func setupUsers(a *app, _ *pflag.FlagSet) action {
	return func(ctx context.Context, _ []string) error {
		return a.call(ctx, 0, func(ctx context.Context, c *client.Client) error {
			r, err := c.Users(ctx)
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(r)
			}
			if len(r.Users) == 0 {
				fmt.Fprintln(a.stdout, "nobody is logged in")
				return nil
			}
			t := newTable(a.stdout)
			fmt.Fprintf(t, "USER\tLOGIN\n")
			for _, u := range r.Users {
				sec := int64(u.LoginTime)
				login := time.Unix(sec, int64((u.LoginTime-float64(sec))*1e9)).UTC().Format(time.RFC3339)
				name := u.User
				if u.Domain != "" {
					name = u.Domain + `\` + name
				}
				fmt.Fprintf(t, "%s\t%s\n", name, login)
			}
			return t.Flush()
		})
	}
}

func setupMemory(a *app, _ *pflag.FlagSet) action {
	return func(ctx context.Context, _ []string) error {
		return a.call(ctx, 0, func(ctx context.Context, c *client.Client) error {
			m, err := c.MemoryInfo(ctx)
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(m)
			}
			pct := func(n uint64) string {
				if m.TotalBytes == 0 {
					return ""
				}
				return fmt.Sprintf("(%d%%)", n*100/m.TotalBytes)
			}
			t := newTable(a.stdout)
			fmt.Fprintf(t, "Total\t%s\n", humanBytes(m.TotalBytes))
			fmt.Fprintf(t, "Used\t%s\t%s\twithout page cache: what the guest really uses\n", humanBytes(m.UsedBytes), pct(m.UsedBytes))
			fmt.Fprintf(t, "Cache\t%s\t%s\tpage cache and buffers, reclaimable\n", humanBytes(m.CachedBytes+m.BuffersBytes), pct(m.CachedBytes+m.BuffersBytes))
			fmt.Fprintf(t, "Available\t%s\t%s\n", humanBytes(m.AvailableBytes), pct(m.AvailableBytes))
			fmt.Fprintf(t, "Free\t%s\t%s\n", humanBytes(m.FreeBytes), pct(m.FreeBytes))
			fmt.Fprintf(t, "Swap\t%s used of %s\n", humanBytes(m.SwapTotalBytes-m.SwapFreeBytes), humanBytes(m.SwapTotalBytes))
			return t.Flush()
		})
	}
}

func setupSSHKeys(a *app, fs *pflag.FlagSet) action {
	reset := fs.Bool("reset", false, "add: replace every key of the user with the given ones")
	return func(ctx context.Context, args []string) error {
		op, user, keys := args[0], args[1], args[2:]
		switch op {
		case "list":
			if len(keys) > 0 || *reset {
				return usagef("ssh-keys list takes one USER")
			}
		case "add", "remove":
			if *reset && op == "remove" {
				return usagef("ssh-keys remove does not take --reset")
			}
			if len(keys) == 0 {
				var err error
				if keys, err = readKeyLines(a.stdin); err != nil {
					return err
				}
				if len(keys) == 0 {
					return usagef("ssh-keys %s: no keys given (as arguments or one per line on stdin)", op)
				}
			}
		default:
			return usagef("ssh-keys: want list, add or remove, got %q", op)
		}
		return a.call(ctx, 0, func(ctx context.Context, c *client.Client) error {
			var got []string
			var err error
			switch op {
			case "list":
				got, err = c.SSHKeys(ctx, user)
			case "add":
				got, err = c.SSHAddKeys(ctx, user, keys, *reset)
			case "remove":
				got, err = c.SSHRemoveKeys(ctx, user, keys)
			}
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(protocol.SSHAuthorizedKeys{Keys: got})
			}
			if op != "list" {
				fmt.Fprintf(a.stderr, "%s has %d authorized keys now:\n", user, len(got))
			}
			for _, k := range got {
				fmt.Fprintln(a.stdout, k)
			}
			return nil
		})
	}
}

// readKeyLines reads keys, one per line, skipping blank lines and comments.
func readKeyLines(r io.Reader) ([]string, error) {
	var keys []string
	sc := bufio.NewScanner(io.LimitReader(r, 1<<20))
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line != "" && !strings.HasPrefix(line, "#") {
			keys = append(keys, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, &localError{fmt.Errorf("read stdin: %w", err)}
	}
	return keys, nil
}

func setupPassword(a *app, fs *pflag.FlagSet) action {
	crypted := fs.Bool("crypted", false, "the input is a crypt(3) hash ($6$...), not a plain password")
	return func(ctx context.Context, args []string) error {
		user := args[0]
		pw, err := a.readPassword(user, *crypted)
		if err != nil {
			return err
		}
		return a.call(ctx, 30*time.Second, func(ctx context.Context, c *client.Client) error {
			if err := c.SetUserPassword(ctx, user, pw, *crypted); err != nil {
				return err
			}
			if a.json {
				return a.printJSON(struct{}{})
			}
			fmt.Fprintf(a.stdout, "password of %s set\n", user)
			return nil
		})
	}
}

// readPassword reads the password: with a terminal on stdin, twice at a
// prompt without echo; otherwise the first line of stdin.
func (a *app) readPassword(user string, crypted bool) (string, error) {
	what := "password"
	if crypted {
		what = "crypted password"
	}
	if f, ok := a.stdin.(*os.File); ok && isTerminal(f.Fd()) {
		fmt.Fprintf(a.stderr, "New %s for %s: ", what, user)
		p1, err := readNoEcho(f)
		fmt.Fprintln(a.stderr)
		if err != nil {
			return "", &localError{fmt.Errorf("read password: %w", err)}
		}
		fmt.Fprintf(a.stderr, "Again: ")
		p2, err := readNoEcho(f)
		fmt.Fprintln(a.stderr)
		if err != nil {
			return "", &localError{fmt.Errorf("read password: %w", err)}
		}
		if p1 != p2 {
			return "", &localError{errors.New("the passwords differ; nothing changed")}
		}
		if p1 == "" {
			return "", &localError{errors.New("empty password; nothing changed")}
		}
		return p1, nil
	}
	line, err := bufio.NewReader(io.LimitReader(a.stdin, 4096)).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", &localError{fmt.Errorf("read password from stdin: %w", err)}
	}
	line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if line == "" {
		return "", &localError{errors.New("no password on stdin; nothing changed")}
	}
	return line, nil
}
