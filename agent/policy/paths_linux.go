package policy

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// dirFlags open a path component as a directory: never following a link,
// never blocking (a FIFO or device fails with ENOTDIR before it is opened).
const dirFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC

// noOpenat2 makes openEntry walk the entry component by component, as on
// kernels before 5.6 (tests force it; it is set on the first ENOSYS).
var noOpenat2 atomic.Bool

// openNoLinks opens the absolute directory path without following any
// symbolic link in it: openat2 with RESOLVE_NO_SYMLINKS, or, without
// openat2, a walk from "/" opening each component with O_NOFOLLOW. A link
// anywhere gives ELOOP or ENOTDIR.
func openNoLinks(path string) (int, error) {
	if !noOpenat2.Load() {
		fd, err := unix.Openat2(unix.AT_FDCWD, path, &unix.OpenHow{
			Flags:   dirFlags,
			Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
		})
		for err == unix.EINTR || err == unix.EAGAIN {
			fd, err = unix.Openat2(unix.AT_FDCWD, path, &unix.OpenHow{Flags: dirFlags, Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS})
		}
		if err != unix.ENOSYS && err != unix.EPERM { // EPERM: a seccomp filter that does not know openat2
			return fd, err
		}
		noOpenat2.Store(true)
	}
	fd, err := openat(unix.AT_FDCWD, "/", dirFlags)
	if err != nil {
		return -1, err
	}
	for _, c := range components(path) {
		if c == ".." {
			unix.Close(fd)
			return -1, unix.EXDEV
		}
		next, err := openat(fd, c, dirFlags)
		unix.Close(fd)
		if err != nil {
			return -1, err
		}
		fd = next
	}
	return fd, nil
}

func openat(dir int, name string, flags int) (int, error) {
	for {
		fd, err := unix.Openat(dir, name, flags, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// openBeneath opens the directory of rest[:len(rest)-1] below dir with
// openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS. ok is false when there is
// nothing to open, openat2 is missing, or anything (a link, "..", a missing
// or odd component) needs the component walk, which then decides.
func openBeneath(dir int, rest []string) (int, bool) {
	if len(rest) < 2 || noOpenat2.Load() {
		return -1, false
	}
	for _, c := range rest[:len(rest)-1] {
		if c == ".." {
			return -1, false
		}
	}
	how := &unix.OpenHow{Flags: dirFlags, Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := unix.Openat2(dir, strings.Join(rest[:len(rest)-1], "/"), how)
	if err != nil {
		return -1, false
	}
	return fd, true
}

type createdDir struct {
	parent int
	name   string
}

// resolver is one Paths.Do call.
type resolver struct {
	p         *Paths
	requested string
	create    bool
	created   []createdDir
	hops      int
}

// undo removes the directories DoCreate made (deepest first; a directory
// that is no longer empty stays).
func (r *resolver) undo() {
	for i := len(r.created) - 1; i >= 0; i-- {
		_ = unix.Unlinkat(r.created[i].parent, r.created[i].name, unix.AT_REMOVEDIR)
	}
	r.closeCreated()
}

func (r *resolver) closeCreated() {
	for _, c := range r.created {
		unix.Close(c.parent)
	}
	r.created = nil
}

func (r *resolver) resolve(path string) (*Target, error) {
restart:
	cands := r.p.candidates(path)
	var missing error
	escaped := false
	for _, c := range cands {
		t, next, err := r.walk(c)
		if next != "" {
			r.hops++
			if r.hops > maxLinkHops {
				return nil, &fs.PathError{Op: "resolve", Path: r.requested, Err: unix.ELOOP}
			}
			path = next
			goto restart
		}
		switch {
		case err == nil:
			return t, nil
		case IsEscape(err):
			escaped = true
		case errors.Is(err, errMissingEntry):
			if missing == nil {
				missing = err
			}
		default:
			return nil, err
		}
	}
	if missing != nil && !escaped {
		return nil, missing
	}
	return nil, &OutsideError{Path: r.requested, Key: r.p.key}
}

// errMissingEntry: the allowed entry does not exist (or the path goes below
// a single-file entry); nothing is inside it.
var errMissingEntry = errors.New("allowed entry does not exist")

type missingEntryError struct {
	entry string
	err   error
}

func (e *missingEntryError) Error() string {
	return fmt.Sprintf("open allowed entry %s: %v", e.entry, e.err)
}
func (e *missingEntryError) Is(target error) bool {
	return target == errMissingEntry || target == fs.ErrNotExist
}

// walk resolves c's rest below its entry. It returns the target, or the
// path a trusted link leads to (next), or an error.
func (r *resolver) walk(c candidate) (t *Target, next string, err error) {
	rest := c.rest
	names := components(c.entry)
	fd, err := openNoLinks(c.entry)
	switch {
	case err == nil:
	case err == unix.ENOTDIR || err == unix.ELOOP:
		// A single-file entry (or a link as its last component, which
		// the link rule below decides on), or a link in the entry's own
		// path, which is never followed.
		if c.entry == "/" {
			return nil, "", &missingEntryError{c.entry, err}
		}
		pfd, perr := openNoLinks(filepath.Dir(c.entry))
		if perr == unix.ELOOP {
			return nil, "", &UntrustedError{Path: c.entry, Reason: "(allowed entry) has a symbolic link in its own path; it is not used"}
		}
		if perr != nil {
			return nil, "", &missingEntryError{c.entry, perr}
		}
		if len(rest) > 0 {
			_, isLink, _ := readLink(pfd, filepath.Base(c.entry))
			unix.Close(pfd)
			if isLink {
				return nil, "", &UntrustedError{Path: c.entry, Reason: "(allowed entry) has a symbolic link in its own path; it is not used"}
			}
			return nil, "", &missingEntryError{c.entry, unix.ENOTDIR}
		}
		fd = pfd
		names = names[:len(names)-1]
		rest = []string{filepath.Base(c.entry)}
	case err == unix.ENOENT:
		return nil, "", &missingEntryError{c.entry, err}
	default:
		return nil, "", fmt.Errorf("open allowed entry %s: %w", c.entry, err)
	}
	stack := []int{fd}
	if d, ok := openBeneath(fd, rest); ok {
		// Fast path: the directories below the entry hold no link and
		// no "..": one openat2 instead of one openat per component.
		stack = append(stack, d)
		names = append(names, rest[:len(rest)-1]...)
		rest = rest[len(rest)-1:]
	}
	defer func() {
		for _, d := range stack {
			unix.Close(d)
		}
	}()
	name := "."
	for i, comp := range rest {
		last := i == len(rest)-1
		if comp == ".." {
			if len(stack) == 1 {
				return nil, "", &escapeError{}
			}
			unix.Close(stack[len(stack)-1])
			stack = stack[:len(stack)-1]
			names = names[:len(names)-1]
			continue
		}
		if last {
			name = comp
			break
		}
		top := stack[len(stack)-1]
		d, err := openat(top, comp, dirFlags)
		if err == unix.ENOENT && r.create {
			if d, err = r.mkdir(top, comp, names); err != nil {
				return nil, "", err
			}
		}
		if err == unix.ELOOP || err == unix.ENOTDIR {
			l, isLink, lerr := readLink(top, comp)
			if lerr != nil {
				return nil, "", &fs.PathError{Op: "open", Path: joinNames(names, comp), Err: lerr}
			}
			if isLink {
				if err := checkLink(joinNames(names, comp), l); err != nil {
					return nil, "", err
				}
				return nil, joinLink(names, l.Target, rest[i+1:]), nil
			}
		}
		if err != nil {
			return nil, "", &fs.PathError{Op: "open", Path: joinNames(names, comp), Err: err}
		}
		stack = append(stack, d)
		names = append(names, comp)
	}
	top := stack[len(stack)-1]
	if name != "." {
		l, isLink, err := readLink(top, name)
		if err != nil && err != unix.ENOENT {
			return nil, "", &fs.PathError{Op: "open", Path: joinNames(names, name), Err: err}
		}
		if isLink {
			if err := checkLink(joinNames(names, name), l); err != nil {
				return nil, "", err
			}
			return nil, joinLink(names, l.Target, nil), nil
		}
	}
	var st unix.Stat_t
	if err := unix.Fstat(top, &st); err != nil {
		return nil, "", &fs.PathError{Op: "fstat", Path: joinNames(names, ""), Err: err}
	}
	stack = stack[:len(stack)-1] // top is kept, in the Target
	p := joinNames(names, name)
	if name == "." {
		p = joinNames(names, "")
	}
	return &Target{
		Dir:    os.NewFile(uintptr(top), joinNames(names, "")),
		Name:   name,
		Path:   p,
		Shared: sharedDir(st.Uid, st.Gid, st.Mode),
		DirUID: st.Uid,
	}, "", nil
}

// mkdir creates the missing directory comp in dir for DoCreate and opens it.
func (r *resolver) mkdir(dir int, comp string, names []string) (int, error) {
	err := unix.Mkdirat(dir, comp, 0o755)
	if err != nil && err != unix.EEXIST {
		return -1, &fs.PathError{Op: "mkdir", Path: joinNames(names, comp), Err: err}
	}
	made := err == nil
	d, err := openat(dir, comp, dirFlags)
	if err != nil {
		return -1, err
	}
	if made {
		pd, derr := unix.Dup(dir)
		if derr == nil {
			r.created = append(r.created, createdDir{parent: pd, name: comp})
		}
		var st unix.Stat_t
		if err := unix.Fstat(d, &st); err != nil || st.Uid != agentUID {
			// Someone replaced the new directory before it was opened.
			unix.Close(d)
			return -1, &UntrustedError{Path: joinNames(names, comp), Reason: "was replaced by another user's directory while being created"}
		}
	}
	return d, nil
}

// readLink reports whether name in dir is a symbolic link and, if so, its
// owner, link count, file system and text, all from one handle on the link
// itself (so a link swapped meanwhile cannot mix the owner of one with the
// target of another).
func readLink(dir int, name string) (LinkInfo, bool, error) {
	lfd, err := openat(dir, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC)
	if err != nil {
		return LinkInfo{}, false, err
	}
	defer unix.Close(lfd)
	var st unix.Stat_t
	if err := unix.Fstat(lfd, &st); err != nil {
		return LinkInfo{}, false, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		return LinkInfo{}, false, nil
	}
	buf := make([]byte, 4096)
	n, err := unix.Readlinkat(lfd, "", buf)
	if err != nil {
		return LinkInfo{}, false, err
	}
	var sfs unix.Statfs_t
	onProc := unix.Fstatfs(dir, &sfs) == nil && sfs.Type == unix.PROC_SUPER_MAGIC
	return LinkInfo{UID: st.Uid, Nlink: uint64(st.Nlink), OnProc: onProc, Target: string(buf[:n])}, true, nil
}

// sharedDir reports whether users other than root may create, rename or
// remove entries in a directory with this owner, group and mode (or it is
// sticky, the mark of a directory meant to be shared).
func sharedDir(uid, gid, mode uint32) bool {
	return mode&unix.S_ISVTX != 0 || mode&0o002 != 0 || (mode&0o020 != 0 && gid != 0) || !trustedUID(uid)
}

func joinNames(names []string, name string) string {
	p := "/" + strings.Join(names, "/")
	if name == "" {
		return p
	}
	if p == "/" {
		return p + name
	}
	return p + "/" + name
}
