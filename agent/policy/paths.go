//go:build !windows

// Package policy holds the agent's security decisions: which paths file_read
// and file_write may touch and which symbolic links on the way may be
// followed (see Paths), and which commands exec_command may run (resolved
// through a fixed system PATH, see Commands).
//
// The decisions themselves (which entry contains a path, whether a link or a
// file in a directory others can write is trusted) are OS-neutral and live in
// the files without a suffix; how a path is opened without ever letting the
// kernel follow a link lives in the _linux.go files.
package policy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Errors returned (wrapped) by Paths.Do; the agent maps them to protocol codes.
var (
	// ErrNotAbsolute: the requested path is not absolute.
	ErrNotAbsolute = errors.New("path is not absolute")
	// ErrOutside: the path does not lie inside any allowed entry, or resolving
	// it would leave the allowed entries (via "..", a symlink or a /proc
	// magic link).
	ErrOutside = errors.New("path is outside the allowed paths")
	// ErrUntrusted: a symbolic link on the path, or the file itself, could
	// have been planted by a user other than root (see Paths).
	ErrUntrusted = errors.New("refused: another user could have planted it")
)

// agentUID is the user the agent runs as: root in production. Links and
// files it (or root) owns count as root's.
var agentUID = uint32(os.Geteuid())

// trustedUID reports whether uid is root or the agent's own user.
func trustedUID(uid uint32) bool { return uid == 0 || uid == agentUID }

// maxLinkHops bounds the symbolic links followed while resolving one path,
// as the kernel's ELOOP limit does.
const maxLinkHops = 40

// Paths is a list of allowed entries (directories or single files) under one
// configuration key, e.g. allowed_read_paths.
//
// The rule for symbolic links, the same for reads and writes: a link met
// anywhere on a path (the last component included) is followed only when it
// is owned by root and has a single name (link count 1), because nobody but
// root can create such a link; its target must again lie inside the allowed
// entries of the same key, and is resolved under the same rule. Links on
// procfs are followed only when their target is a relative name without
// ".." (/proc/self, /proc/mounts): the kernel's magic links (/proc/PID/root,
// cwd, exe, fd/N, map_files) never are. Any other link is refused with
// ErrUntrusted. Allowed entries themselves are opened without following any
// link in their own path. The kernel never follows a link for the agent:
// every component is opened with no-follow, directory-only and non-blocking
// flags, so a FIFO or device swapped in cannot block a request.
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

// Target is a resolved path: the directory that holds it, opened (never
// through an untrusted link), and the final name inside it.
type Target struct {
	// Dir is the directory holding Name, opened read-only as a directory.
	// It stays valid (the same directory) even if a user renames it.
	Dir *os.File
	// Name is one path component, neither "" nor "..": the file inside
	// Dir, which may not exist; "." when the path names Dir itself. It is
	// not a trusted link (those were followed) but may become one before
	// the caller opens it: open it with no-follow flags.
	Name string
	// Path is the resolved absolute path, for messages.
	Path string
	// Shared reports that other users may create or rename entries in
	// Dir: it is sticky or writable by a user other than root.
	Shared bool
	// DirUID is the owner of Dir.
	DirUID uint32
}

// Do resolves path inside the allowed entries (see Paths for the rules) and
// runs op on the result. Missing directories are an error wrapping
// fs.ErrNotExist. A path that no allowed entry contains, or whose resolution
// leaves them, gives an error wrapping ErrOutside; an untrusted link
// ErrUntrusted. Other errors from op are returned unchanged.
func (p *Paths) Do(path string, op func(t *Target) error) error {
	return p.do(path, false, op)
}

// DoCreate is Do that first creates the missing directories of path (mode
// 0755, owned by the agent) inside the allowed entry; if op fails, the
// directories it created are removed again (those still empty).
func (p *Paths) DoCreate(path string, op func(t *Target) error) error {
	return p.do(path, true, op)
}

func (p *Paths) do(path string, create bool, op func(t *Target) error) error {
	if !strings.HasPrefix(path, "/") {
		return fmt.Errorf("path %q: %w", path, ErrNotAbsolute)
	}
	if strings.IndexByte(path, 0) >= 0 {
		return &OutsideError{Path: path, Key: p.key}
	}
	r := &resolver{p: p, requested: path, create: create}
	t, err := r.resolve(path)
	if err != nil {
		r.undo()
		return err
	}
	defer t.Dir.Close()
	if err := op(t); err != nil {
		r.undo()
		return err
	}
	r.closeCreated()
	return nil
}

// candidate is an allowed entry that contains a path by whole components.
type candidate struct {
	entry string   // the entry, cleaned
	rest  []string // the path's components below it ("." and "" dropped)
}

// candidates returns the entries that contain path, longest first.
func (p *Paths) candidates(path string) []candidate {
	comps := components(path)
	var out []candidate
	for _, e := range p.entries {
		ec := components(e)
		if len(ec) > len(comps) || !slices.Equal(ec, comps[:len(ec)]) {
			continue
		}
		out = append(out, candidate{entry: e, rest: comps[len(ec):]})
	}
	slices.SortStableFunc(out, func(a, b candidate) int { return len(b.entry) - len(a.entry) })
	return out
}

// LinkInfo describes a symbolic link met while resolving a path.
type LinkInfo struct {
	UID    uint32 // owner
	Nlink  uint64 // number of names
	OnProc bool   // lives on procfs
	Target string // its text
}

// checkLink applies the link rule of Paths: nil if the link may be followed.
func checkLink(at string, l LinkInfo) error {
	switch {
	case !trustedUID(l.UID):
		return &UntrustedError{Path: at, Reason: fmt.Sprintf("is a symbolic link owned by uid %d; only links owned by root are followed", l.UID)}
	case l.Nlink != 1:
		return &UntrustedError{Path: at, Reason: fmt.Sprintf("is a symbolic link with %d names (hard links); not followed", l.Nlink)}
	case l.OnProc && (strings.HasPrefix(l.Target, "/") || slices.Contains(strings.Split(l.Target, "/"), "..")):
		return &escapeError{}
	}
	return nil
}

// CheckFile applies the rules for an existing file in a directory that other
// users can write (t.Shared), the same the kernel's protected_hardlinks and
// protected_regular settings enforce for unprivileged users: a file with
// more than one name there is refused (its other name may be a file the host
// never asked for), and file_write (replace) refuses to replace a file owned
// by a user other than root, whose owner could have prepared it. It returns
// nil when t.Shared is false.
func CheckFile(t *Target, uid uint32, nlink uint64, replace bool) error {
	if !t.Shared {
		return nil
	}
	if nlink > 1 {
		return &UntrustedError{Path: t.Path, Reason: fmt.Sprintf("has %d names (hard links) in a directory other users can write", nlink)}
	}
	if replace && !trustedUID(uid) {
		return &UntrustedError{Path: t.Path, Reason: fmt.Sprintf("is owned by uid %d in a directory other users can write; the agent does not replace it", uid)}
	}
	return nil
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

// UntrustedError is Do's refusal of a link or file another user could have
// planted. It matches ErrUntrusted with errors.Is.
type UntrustedError struct {
	Path   string // the resolved path of the link or file
	Reason string
}

func (e *UntrustedError) Error() string { return fmt.Sprintf("%s %s", e.Path, e.Reason) }

// Is makes errors.Is(err, ErrUntrusted) true.
func (e *UntrustedError) Is(target error) bool { return target == ErrUntrusted }

// escapeError: resolution left the candidate entry (the next one is tried).
type escapeError struct{}

func (*escapeError) Error() string { return "path escapes from the allowed entry" }

// IsEscape reports whether err refuses a path for leaving the allowed
// entries.
func IsEscape(err error) bool {
	var e *escapeError
	return errors.Is(err, ErrOutside) || errors.As(err, &e)
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

// joinLink returns the path a link's target names: dir is the resolved
// directory holding the link (no links in it), rest the components still to
// resolve after the link. Leading ".." of a relative target are applied to
// dir at once (dir has no links, so that is exact); later ones are left to
// the resolution.
func joinLink(dir []string, target string, rest []string) string {
	var base []string
	if !strings.HasPrefix(target, "/") {
		base = slices.Clone(dir)
	}
	tc := components(target)
	for len(tc) > 0 && tc[0] == ".." {
		if len(base) > 0 {
			base = base[:len(base)-1]
		}
		tc = tc[1:]
	}
	all := append(append(base, tc...), rest...)
	return "/" + strings.Join(all, "/")
}
