package policy

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"golang.org/x/sys/windows"
)

// Errors returned (wrapped) by the Windows path checks; the agent maps them
// to protocol codes.
var (
	// ErrNotAbsolute: the path is not a drive-absolute path (C:\...).
	ErrNotAbsolute = errors.New(`path is not absolute (want a drive path such as C:\Windows\Temp\x)`)
	// ErrOutside: the path does not lie inside any allowed entry, or a
	// junction or symbolic link on it leads outside.
	ErrOutside = errors.New("path is outside the allowed paths")
	// ErrForbiddenName: the path uses a Windows alias that could name
	// another file than it seems to: a device (\\.\, CON, NUL, COM1...), an
	// NT or long path prefix (\\?\, \??\), a UNC share, an alternate data
	// stream (name:stream), an 8.3 short name (PROGRA~1), or a name that
	// Windows silently shortens (a trailing dot or space).
	ErrForbiddenName = errors.New("path uses a form Windows could alias to another file")
	// ErrUntrusted: the file itself is a symbolic link or junction.
	ErrUntrusted = errors.New("refused: the file is a symbolic link or junction")
)

// OutsideError is the refusal of a path outside the allowed entries.
type OutsideError struct {
	Path, Key string
}

func (e *OutsideError) Error() string { return fmt.Sprintf("path %q is outside %s", e.Path, e.Key) }

// Is makes errors.Is(err, ErrOutside) true.
func (e *OutsideError) Is(target error) bool { return target == ErrOutside }

// Paths is a list of allowed entries (directories or single files) under one
// configuration key, with Windows semantics: drive paths only, compared
// case-insensitively by whole components. A path is accepted in two steps:
// Check applies the name rules to the requested path, then the caller opens
// the file (never following a link in the last component) and Contains
// checks the final path Windows reports for the open handle
// (GetFinalPathNameByHandle), so that junctions and symbolic links in the
// middle cannot lead out, against the entries' own final paths.
type Paths struct {
	key     string
	entries []string // cleaned, drive-absolute
}

// NewPaths returns the policy for the entries of config key key.
func NewPaths(key string, entries []string) *Paths {
	p := &Paths{key: key}
	for _, e := range entries {
		p.entries = append(p.entries, filepath.Clean(e))
	}
	return p
}

// Key is the configuration key the entries come from.
func (p *Paths) Key() string { return p.key }

// reservedDevices are the DOS device names Windows resolves in every
// directory, with any extension ("NUL.txt" is NUL).
var reservedDevices = map[string]bool{
	"CON": true, "PRN": true, "AUX": true, "NUL": true, "CONIN$": true, "CONOUT$": true, "CLOCK$": true,
}

// forbiddenComponent says why one path component is refused, or "".
func forbiddenComponent(c string) string {
	if c == "" {
		return ""
	}
	for _, r := range c {
		switch {
		case r < 0x20:
			return "a control character"
		case strings.ContainsRune(`<>"|?*`, r):
			return fmt.Sprintf("the wildcard or reserved character %q", r)
		case r == ':':
			return "an alternate data stream (':')"
		}
	}
	if strings.HasSuffix(c, ".") || strings.HasSuffix(c, " ") {
		return "a trailing dot or space (Windows drops it: the name would be another file's)"
	}
	base := strings.ToUpper(c)
	if i := strings.IndexByte(base, '.'); i >= 0 {
		base = base[:i]
	}
	base = strings.TrimRight(base, " ")
	if reservedDevices[base] {
		return "the device name " + base
	}
	if strings.HasPrefix(base, "COM") || strings.HasPrefix(base, "LPT") {
		switch base[3:] {
		case "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "¹", "²", "³":
			return "the device name " + base
		}
	}
	if isShortName(c) {
		return "an 8.3 short name (use the long name)"
	}
	return ""
}

// isShortName reports whether c looks like a generated 8.3 name: up to six
// characters, "~", digits, and an optional extension of up to three.
func isShortName(c string) bool {
	i := strings.IndexByte(c, '~')
	if i < 1 || i > 6 {
		return false
	}
	rest := c[i+1:]
	ext := ""
	if j := strings.IndexByte(rest, '.'); j >= 0 {
		rest, ext = rest[:j], rest[j+1:]
	}
	if rest == "" || len(ext) > 3 {
		return false
	}
	for _, r := range rest {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// Clean applies the name rules to a requested path and returns it cleaned
// (C:\a\b, "." and ".." resolved lexically, "/" turned into "\").
func Clean(path string) (string, error) {
	if strings.IndexByte(path, 0) >= 0 {
		return "", fmt.Errorf("path %q: a NUL byte: %w", path, ErrForbiddenName)
	}
	p := strings.ReplaceAll(path, "/", `\`)
	switch {
	case strings.HasPrefix(p, `\\?\`), strings.HasPrefix(p, `\??\`):
		return "", fmt.Errorf(`path %q: the \\?\ prefix: %w`, path, ErrForbiddenName)
	case strings.HasPrefix(p, `\\.\`):
		return "", fmt.Errorf(`path %q: a device path (\\.\): %w`, path, ErrForbiddenName)
	case strings.HasPrefix(p, `\\`):
		return "", fmt.Errorf("path %q: a UNC share: %w", path, ErrForbiddenName)
	}
	if len(p) < 3 || p[1] != ':' || p[2] != '\\' || !isDriveLetter(p[0]) {
		return "", fmt.Errorf("path %q: %w", path, ErrNotAbsolute)
	}
	for _, c := range strings.Split(p[3:], `\`) {
		if c == "." || c == ".." {
			continue // resolved lexically below, then checked on the handle
		}
		if why := forbiddenComponent(c); why != "" {
			return "", fmt.Errorf("path %q: %s: %w", path, why, ErrForbiddenName)
		}
	}
	return filepath.Clean(p), nil
}

func isDriveLetter(b byte) bool { return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' }

// within reports whether path equals dir or lies below it, comparing whole
// components case-insensitively.
func within(path, dir string) bool {
	if len(path) < len(dir) || !strings.EqualFold(path[:len(dir)], dir) {
		return false
	}
	return len(path) == len(dir) || strings.HasSuffix(dir, `\`) || path[len(dir)] == '\\'
}

// Entry returns the longest allowed entry that contains the cleaned path,
// or an error wrapping ErrOutside.
func (p *Paths) Entry(path string) (string, error) {
	best := ""
	for _, e := range p.entries {
		if within(path, e) && len(e) > len(best) {
			best = e
		}
	}
	if best == "" {
		return "", &OutsideError{Path: path, Key: p.key}
	}
	return best, nil
}

// Contains reports whether final, the final path of an open handle
// (GetFinalPathNameByHandle: \\?\C:\..., long names, links resolved), lies
// inside entry, whose own final path is entryFinal ("" when the entry does
// not exist, e.g. a single-file entry being created: then the entry as
// written counts).
func Contains(final, entry, entryFinal string) bool {
	final = StripFinalPrefix(final)
	if entryFinal == "" {
		return within(final, entry)
	}
	return within(final, StripFinalPrefix(entryFinal))
}

// StripFinalPrefix turns \\?\C:\x into C:\x; other forms (\\?\UNC\...,
// \\?\Volume{...}) are kept and so never match a drive entry.
func StripFinalPrefix(p string) string {
	if strings.HasPrefix(p, `\\?\`) && len(p) >= 7 && p[5] == ':' && isDriveLetter(p[4]) {
		return p[4:]
	}
	return p
}

// FinalPath returns the final path of an open handle: long names, junctions
// and symbolic links resolved, drive letter form (\\?\C:\...).
func FinalPath(h windows.Handle) (string, error) {
	buf := make([]uint16, windows.MAX_PATH)
	for {
		n, err := windows.GetFinalPathNameByHandle(h, &buf[0], uint32(len(buf)), 0) // FILE_NAME_NORMALIZED|VOLUME_NAME_DOS
		if err != nil {
			return "", fmt.Errorf("GetFinalPathNameByHandle: %w", err)
		}
		if int(n) < len(buf) {
			return windows.UTF16ToString(buf[:n]), nil
		}
		buf = make([]uint16, n+1)
	}
}

// EntryFinalPath opens entry (following links: the administrator chose it)
// and returns its final path, or "" when it does not exist.
func EntryFinalPath(entry string) (string, error) {
	e16, err := windows.UTF16PtrFromString(entry)
	if err != nil {
		return "", err
	}
	h, err := windows.CreateFile(e16, 0, windows.FILE_SHARE_READ|windows.FILE_SHARE_WRITE|windows.FILE_SHARE_DELETE, nil,
		windows.OPEN_EXISTING, windows.FILE_FLAG_BACKUP_SEMANTICS, 0)
	if err != nil {
		if errors.Is(err, windows.ERROR_FILE_NOT_FOUND) || errors.Is(err, windows.ERROR_PATH_NOT_FOUND) {
			return "", nil
		}
		return "", fmt.Errorf("open allowed entry %s: %w", entry, err)
	}
	defer windows.CloseHandle(h)
	return FinalPath(h)
}
