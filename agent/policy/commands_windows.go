package policy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/windows"
)

// Errors returned (wrapped) by Commands.Resolve.
var (
	// ErrBadCommand: the command is empty, contains a NUL byte, or is a
	// relative path ("bin\x", ".\x").
	ErrBadCommand = errors.New(`command must be a bare name or an absolute path (C:\...)`)
	// ErrNotWhitelisted: the whitelist is on and the command is not in it.
	ErrNotWhitelisted = errors.New("command is not in command_whitelist")
	// ErrCommandNotFound: no such executable.
	ErrCommandNotFound = errors.New("command not found")
	// ErrNotExecutable: the file is not an .exe or .com program. Batch files
	// (.bat, .cmd) are refused: CreateProcess hands them to cmd.exe, whose
	// parsing of the arguments cannot be quoted safely; run
	// "cmd" with "/c" explicitly instead.
	ErrNotExecutable = errors.New("not an executable program (.exe or .com)")
)

// SystemDirs are the only directories searched for bare command names, and
// the PATH of every child: System32, Windows and Wbem of the running system.
func SystemDirs() []string {
	root, err := windows.GetSystemWindowsDirectory()
	if err != nil || root == "" {
		root = `C:\Windows`
	}
	return []string{filepath.Join(root, "System32"), root, filepath.Join(root, "System32", "Wbem")}
}

// SystemPATH is SystemDirs joined with ";".
var SystemPATH = strings.Join(SystemDirs(), ";")

// executableExts are tried, in order, after a bare name without extension.
var executableExts = []string{".exe", ".com"}

// Commands decides which commands exec_command may run.
type Commands struct {
	whitelistEnabled bool
	whitelist        []string
	dirs             []string
}

// NewCommands returns the command policy. With the whitelist enabled, a
// command must be listed in whitelist: a bare name (compared without case,
// "cmd" also allows "cmd.exe") resolved through dirs, or an absolute path
// allowed verbatim. dirs is the search path; nil means SystemDirs.
func NewCommands(whitelistEnabled bool, whitelist []string, dirs []string) *Commands {
	if dirs == nil {
		dirs = SystemDirs()
	}
	return &Commands{whitelistEnabled: whitelistEnabled, whitelist: slices.Clone(whitelist), dirs: dirs}
}

func (c *Commands) listed(command string) bool {
	for _, w := range c.whitelist {
		if strings.EqualFold(w, command) {
			return true
		}
		if !strings.ContainsAny(w, `\/:`) && !strings.ContainsAny(command, `\/:`) &&
			strings.EqualFold(strings.TrimSuffix(strings.ToLower(command), ".exe"), strings.TrimSuffix(strings.ToLower(w), ".exe")) {
			return true
		}
	}
	return false
}

// Resolve returns the absolute path of the program to run for command.
func (c *Commands) Resolve(command string) (string, error) {
	if command == "" || strings.IndexByte(command, 0) >= 0 {
		return "", fmt.Errorf("command %q: %w", command, ErrBadCommand)
	}
	abs := false
	if strings.ContainsAny(command, `\/:`) {
		clean, err := Clean(command)
		if err != nil {
			return "", fmt.Errorf("command %q: %w", command, ErrBadCommand)
		}
		command, abs = clean, true
	}
	if c.whitelistEnabled && !c.listed(command) {
		return "", fmt.Errorf("command %q: %w", command, ErrNotWhitelisted)
	}
	if abs {
		if err := checkProgram(command); err != nil {
			return "", err
		}
		return command, nil
	}
	names := []string{command}
	if filepath.Ext(command) == "" {
		names = nil
		for _, e := range executableExts {
			names = append(names, command+e)
		}
	}
	for _, dir := range c.dirs {
		for _, n := range names {
			p := filepath.Join(dir, n)
			err := checkProgram(p)
			if err == nil {
				return p, nil
			}
			if !errors.Is(err, ErrCommandNotFound) {
				return "", err
			}
		}
	}
	return "", fmt.Errorf("command %q: %w in %s", command, ErrCommandNotFound, strings.Join(c.dirs, ";"))
}

func checkProgram(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("command %s: %w", p, ErrCommandNotFound)
	}
	ext := strings.ToLower(filepath.Ext(p))
	if !fi.Mode().IsRegular() || (ext != ".exe" && ext != ".com") {
		return fmt.Errorf("command %s: %w", p, ErrNotExecutable)
	}
	return nil
}
