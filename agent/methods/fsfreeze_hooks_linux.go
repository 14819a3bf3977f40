package methods

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/kvmmanager/guest-agent/agent/policy"
)

// FsfreezeHookDir holds the programs run around a freeze, like qemu-ga's
// /etc/qemu/fsfreeze-hook.d: each with the argument "freeze" before the
// file systems are frozen (in name order) and "thaw" after they are thawed
// (in reverse name order), e.g. to flush and lock a database.
const FsfreezeHookDir = "/etc/kvmmanager-agent/fsfreeze-hook.d"

// hookTimeoutDefault bounds one hook run.
const hookTimeoutDefault = 60 * time.Second

// hookOutputMax caps the output of a hook kept for the log.
const hookOutputMax = 16 << 10

// ignoredHookSuffixes are backup and package-manager leftovers that are
// never run (qemu-ga's fsfreeze-hook skips the same names).
var ignoredHookSuffixes = []string{
	"~", ".bak", ".orig", ".rpmnew", ".rpmorig", ".rpmsave", ".sample", ".dpkg-old",
	".dpkg-new", ".dpkg-tmp", ".dpkg-dist", ".dpkg-bak", ".dpkg-backup", ".dpkg-remove",
}

func (s *Service) hookDirectory() string {
	if s.guest.hookDir != "" {
		return s.guest.hookDir
	}
	return s.hostPath(FsfreezeHookDir)
}

// freezeHooks returns the hooks to run, in name order: executable regular
// files (symlinks are followed) owned by root and writable by nobody else,
// in a directory owned by root and writable by nobody else. Anything else
// is left out with a warning: the agent runs these as root.
func (s *Service) freezeHooks() []string {
	dir := s.hookDirectory()
	st, err := os.Lstat(dir)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("fsfreeze hooks not run", "dir", dir, "err", err)
		}
		return nil
	}
	if err := safeForRoot(st); err != nil || !st.IsDir() {
		s.log.Warn("fsfreeze hooks not run: unsafe directory", "dir", dir, "err", err)
		return nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		s.log.Warn("fsfreeze hooks not run", "dir", dir, "err", err)
		return nil
	}
	var out []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || slices.ContainsFunc(ignoredHookSuffixes, func(suf string) bool { return strings.HasSuffix(name, suf) }) {
			continue
		}
		p := filepath.Join(dir, name)
		st, err := os.Stat(p)
		if err != nil || !st.Mode().IsRegular() || st.Mode().Perm()&0o100 == 0 {
			continue
		}
		if err := safeForRoot(st); err != nil {
			s.log.Warn("fsfreeze hook not run: unsafe file", "hook", p, "err", err)
			continue
		}
		out = append(out, p)
	}
	return out
}

// safeForRoot accepts a file root owns and nobody else may write.
func safeForRoot(st os.FileInfo) error {
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return errors.New("no owner information")
	}
	if sys.Uid != 0 {
		return fmt.Errorf("owned by uid %d, not root", sys.Uid)
	}
	if st.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("mode %04o is writable by group or others", st.Mode().Perm())
	}
	return nil
}

// runFreezeHooks runs the hooks with "freeze" and returns those that ran
// (the failed one included, so that it is told to thaw too). A failure
// stops the list: the file systems are not frozen.
func (s *Service) runFreezeHooks(ctx context.Context, arg string) ([]string, error) {
	var ran []string
	for _, h := range s.freezeHooks() {
		ran = append(ran, h)
		if err := s.runHook(ctx, h, arg); err != nil {
			return ran, wrapErr(nil, err, "fsfreeze hook %s %s failed", h, arg)
		}
	}
	return ran, nil
}

// runHooks runs every hook with arg ("thaw": in reverse name order); a
// failure is logged and the others still run.
func (s *Service) runHooks(ctx context.Context, arg string) {
	hooks := s.freezeHooks()
	if arg == "thaw" {
		slices.Reverse(hooks)
	}
	s.runHookList(ctx, hooks, arg)
}

func (s *Service) runHookList(ctx context.Context, hooks []string, arg string) {
	for _, h := range hooks {
		if err := s.runHook(ctx, h, arg); err != nil {
			s.log.Warn("fsfreeze hook failed", "hook", h, "arg", arg, "err", err)
		}
	}
}

// runHook runs one hook with a bound, in its own process group (killed
// whole on timeout), with the fixed system PATH and no stdin.
func (s *Service) runHook(ctx context.Context, path, arg string) error {
	timeout := s.guest.hookTimeout
	if timeout <= 0 {
		timeout = hookTimeoutDefault
	}
	cmd := exec.Command(path, arg)
	cmd.Env = []string{"PATH=" + policy.SystemPATH, "LANG=C"}
	cmd.Dir = "/"
	out := newCappedBuffer(hookOutputMax)
	cmd.Stdout, cmd.Stderr = out, out
	err := s.runHelper(ctx, cmd, timeout)
	text, _ := out.result()
	s.log.Info("fsfreeze hook ran", "hook", path, "arg", arg, "err", err, "output", strings.TrimSpace(text))
	return err
}
