//go:build !windows

// Package policy holds the agent's security decisions: which paths file_read
// and file_write may touch (resolved inside the allowed entry with os.Root, so
// "..", symlinks and /proc magic links cannot lead outside), and which
// commands exec_command may run (resolved through a fixed system PATH).
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

// Errors returned (wrapped) by Paths.Do; the agent maps them to protocol codes.
var (
	// ErrNotAbsolute: the requested path is not absolute.
	ErrNotAbsolute = errors.New("path is not absolute")
	// ErrOutside: the path does not lie inside any allowed entry, or resolving
	// it inside the entry would leave the entry (via "..", a symlink or a
	// /proc magic link).
	ErrOutside = errors.New("path is outside the allowed paths")
)

// Paths is a list of allowed entries (directories or single files) under one
// configuration key, e.g. allowed_read_paths.
type Paths struct {
	key     string
	entries []string // cleaned, absolute
}

// NewPaths returns the policy for the entries of config key key. Entries must
// be absolute; they are cleaned.
func NewPaths(key string, entries []string) *Paths {
	p := &Paths{key: key}
	for _, e := range entries {
		p.entries = append(p.entries, filepath.Clean(e))
	}
	return p
}

// Key is the configuration key the entries come from.
func (p *Paths) Key() string { return p.key }

// Do runs op on the file named by the absolute path, inside the os.Root of the
// allowed entry that contains it by whole path components. For a directory
// entry, root is the entry itself and name the rest of the path; for a
// single-file entry (path equal to the entry), root is the entry's parent and
// name its base name; a single-file entry that is a symbolic link is refused.
// The path is not cleaned first: "..", symlinks and magic
// links are resolved by os.Root, which refuses any that leave the root.
//
// When several entries contain the path, the longest is tried first; if op
// fails because resolution escapes that entry, the next one is tried. If no
// entry contains the path, or every attempt escapes, Do returns an error
// wrapping ErrOutside. Other errors from op are returned unchanged.
func (p *Paths) Do(path string, op func(root *os.Root, name string) error) error {
	if !strings.HasPrefix(path, "/") {
		return fmt.Errorf("path %q: %w", path, ErrNotAbsolute)
	}
	if strings.IndexByte(path, 0) >= 0 {
		return &OutsideError{Path: path, Key: p.key}
	}
	comps := components(path)
	type candidate struct {
		entry, dir, name string
		single           bool // the path names the entry itself
	}
	var cands []candidate
	for _, e := range p.entries {
		ec := components(e)
		if len(ec) > len(comps) || !slices.Equal(ec, comps[:len(ec)]) {
			continue
		}
		rest := comps[len(ec):]
		switch {
		case e == "/":
			cands = append(cands, candidate{e, "/", joinRel(rest), false})
		case len(rest) == 0:
			// The path names the entry itself, which may be a single file:
			// resolve its base name inside the parent directory.
			cands = append(cands, candidate{e, filepath.Dir(e), filepath.Base(e), true})
		default:
			cands = append(cands, candidate{e, e, joinRel(rest), false})
		}
	}
	slices.SortStableFunc(cands, func(a, b candidate) int { return len(b.entry) - len(a.entry) })
	var missing error
	escaped := false
	for _, c := range cands {
		root, err := os.OpenRoot(c.dir)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
				// The allowed directory does not exist (or the path goes
				// below a single-file entry): nothing is inside it.
				if missing == nil {
					missing = fmt.Errorf("open allowed entry %s: %w", c.dir, err)
				}
				continue
			}
			return fmt.Errorf("open allowed entry %s: %w", c.dir, err)
		}
		if c.single {
			// A single-file entry allows that file, not what a symbolic
			// link there points to (a sibling in the same directory
			// would otherwise be reachable).
			if fi, err := root.Lstat(c.name); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
				root.Close()
				escaped = true
				continue
			}
		}
		err = op(root, c.name)
		root.Close()
		if err == nil || !IsEscape(err) {
			return err
		}
		escaped = true
	}
	if missing != nil && !escaped {
		return missing
	}
	return &OutsideError{Path: path, Key: p.key}
}

// OutsideError is Do's refusal of a path outside the allowed entries. It
// matches ErrOutside with errors.Is.
type OutsideError struct {
	Path string // as requested
	Key  string // the config key, e.g. allowed_read_paths
}

func (e *OutsideError) Error() string { return fmt.Sprintf("path %q is outside %s", e.Path, e.Key) }

// Is makes errors.Is(err, ErrOutside) true.
func (e *OutsideError) Is(target error) bool { return target == ErrOutside }

// IsEscape reports whether err is os.Root's refusal of a path that leaves the
// root ("path escapes from parent"). The os package does not export that
// error; the policy tests pin the behaviour with real symlinks.
func IsEscape(err error) bool {
	if errors.Is(err, ErrOutside) {
		return true
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		if e.Error() == "path escapes from parent" {
			return true
		}
	}
	return false
}

// components splits an absolute path into its names, dropping empty and "."
// components (which never change what a path names) but keeping "..".
func components(path string) []string {
	var out []string
	for _, c := range strings.Split(path, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

func joinRel(comps []string) string {
	if len(comps) == 0 {
		return "."
	}
	return strings.Join(comps, "/")
}
