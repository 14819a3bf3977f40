//go:build !windows

package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// SystemPATH is the only search path for bare command names, and the PATH
// of every child process. A request's environment never changes it.
const SystemPATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Errors returned (wrapped) by Commands.Resolve.
var (
	// ErrBadCommand: the command is empty, contains a NUL byte, or is a
	// relative path with a slash ("./x", "../bin/ls", "bin/ls").
	ErrBadCommand = errors.New("command must be a bare name or an absolute path")
	// ErrNotWhitelisted: the whitelist is on and the command is not in it.
	ErrNotWhitelisted = errors.New("command is not in command_whitelist")
	// ErrCommandNotFound: no such executable.
	ErrCommandNotFound = errors.New("command not found")
	// ErrNotExecutable: the file exists but is not an executable regular file.
	ErrNotExecutable = errors.New("not an executable regular file")
)

// Commands decides which commands exec_command may run.
type Commands struct {
	whitelistEnabled bool
	whitelist        []string
	dirs             []string
}

// NewCommands returns the command policy. With the whitelist enabled, a
// command must be a bare name listed in whitelist (resolved through dirs) or
// an absolute path listed verbatim. dirs is the search path for bare names;
// nil means SystemPATH.
func NewCommands(whitelistEnabled bool, whitelist []string, dirs []string) *Commands {
	if dirs == nil {
		dirs = filepath.SplitList(SystemPATH)
	}
	return &Commands{whitelistEnabled: whitelistEnabled, whitelist: slices.Clone(whitelist), dirs: dirs}
}

// Resolve returns the absolute path of the executable to run for command.
func (c *Commands) Resolve(command string) (string, error) {
	switch {
	case command == "" || strings.IndexByte(command, 0) >= 0:
		return "", fmt.Errorf("command %q: %w", command, ErrBadCommand)
	case strings.ContainsRune(command, '/') && !filepath.IsAbs(command):
		return "", fmt.Errorf("command %q: %w", command, ErrBadCommand)
	}
	if c.whitelistEnabled && !slices.Contains(c.whitelist, command) {
		return "", fmt.Errorf("command %q: %w", command, ErrNotWhitelisted)
	}
	if filepath.IsAbs(command) {
		if err := checkExecutable(command); err != nil {
			return "", err
		}
		if err := CheckChain(command, true); err != nil {
			return "", fmt.Errorf("command %s: %w: %v", command, ErrNotExecutable, err)
		}
		return command, nil
	}
	var firstErr error
	for _, dir := range c.dirs {
		if !trustedDir(dir) {
			continue
		}
		p := filepath.Join(dir, command)
		err := checkExecutable(p)
		if err == nil {
			if !trusted(p) {
				continue // someone else could have replaced it
			}
			return p, nil
		}
		if firstErr == nil && !errors.Is(err, ErrCommandNotFound) {
			firstErr = err
		}
	}
	if firstErr != nil {
		return "", firstErr
	}
	return "", fmt.Errorf("command %q: %w in %s", command, ErrCommandNotFound, strings.Join(c.dirs, ":"))
}

// trustedDir reports whether dir exists and only root (or the agent's own
// user) can write it: a search directory writable by others (world- or
// group-writable, like the historical /usr/local/bin of group staff, or
// owned by another user) would let them plant a command the agent then runs
// as root.
func trustedDir(dir string) bool {
	fi, err := os.Stat(dir)
	return err == nil && fi.IsDir() && trustedFile(fi)
}

// trusted reports whether only root or the agent's user can write p.
func trusted(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && trustedFile(fi)
}

func trustedFile(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return false
	}
	if !trustedUID(st.Uid) {
		return false
	}
	perm := fi.Mode().Perm()
	return perm&0o002 == 0 && (perm&0o020 == 0 || st.Gid == 0)
}

func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
			return fmt.Errorf("command %s: %w", p, ErrCommandNotFound)
		}
		return err // *fs.PathError: already "stat PATH: ..."
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("command %s: %w", p, ErrNotExecutable)
	}
	return nil
}

// ErrReplaceable: a path that another user than root could replace.
var ErrReplaceable = errors.New("could be replaced by a user other than root")

// CheckChain checks that nobody but root (or the agent's user) can replace
// what the absolute path names: no component is a symbolic link, and no
// directory on the way is writable by anyone else, except a sticky one
// (such as /tmp) whose next component exists and belongs to root, since then
// nobody else may rename or remove it. With file set, the path itself must
// also not be writable by anyone else (a command); otherwise it may be (an
// allowed directory such as /tmp). A missing component is fine as long as
// nobody else could create it.
func CheckChain(path string, file bool) error {
	return checkChain(path, file, 0)
}

func checkChain(path string, file bool, depth int) error {
	comps := components(filepath.Clean(path))
	parent := "/"
	pfi, err := os.Lstat(parent)
	if err != nil {
		return err
	}
	for i, c := range comps {
		cur := filepath.Join(parent, c)
		fi, err := os.Lstat(cur)
		exists := err == nil
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if exists && fi.Mode()&fs.ModeSymlink != 0 {
			// A program may be reached through root's links (/bin ->
			// usr/bin); an allowed entry may not (file access never
			// follows a link in an entry's own path).
			if file && ownedByRoot(fi) && depth < maxLinkHops {
				resolved, err := filepath.EvalSymlinks(path)
				if err != nil {
					return err
				}
				return checkChain(resolved, file, depth+1)
			}
			return fmt.Errorf("%s is a symbolic link: %w (list the path it points to)", cur, ErrReplaceable)
		}
		if !trustedFile(pfi) {
			if !(pfi.Mode()&fs.ModeSticky != 0 && exists && ownedByRoot(fi)) {
				return fmt.Errorf("%s: %w: its directory %s is writable by others", cur, ErrReplaceable, parent)
			}
		}
		if !exists {
			return nil // nothing below it exists; the check above covers who can create it
		}
		if i == len(comps)-1 && file && !trustedFile(fi) {
			return fmt.Errorf("%s: %w: it is writable by others or not owned by root", cur, ErrReplaceable)
		}
		parent, pfi = cur, fi
	}
	return nil
}

func ownedByRoot(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && trustedUID(st.Uid)
}
