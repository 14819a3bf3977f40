package iso

import (
	"fmt"
	"path"
	"strings"
)

// The github.com/kdomanski/iso9660 writer records plain ISO 9660 names
// (no Rock Ridge, no Joliet): it lowercases every name, turns every dot but
// the last into "_", cuts the part before the extension so that name, dot,
// extension (at most 8 characters) and ";1" fit in 30 characters, replaces
// characters outside the d1 set with "_", and appends ";1" to file names.
// Linux (isofs, map=normal) shows a file identifier lowercased, with the
// trailing ";1" (or ".;1") dropped and any other ";" shown as ".".
//
// A name on the disc is accepted only when a Linux guest shows exactly that
// name; anything else fails the build with the name in the error.

const (
	fileIdentifierMax = 30 // ECMA-119 7.5, including ".", extension and ";1"
	dirIdentifierMax  = 31 // ECMA-119 7.6
	extensionMax      = 8  // what the writer keeps of an extension
	// allowedChars is what a name may contain: lowercase letters, digits,
	// "_", "-" and ".". Other d1 characters survive the writer but are
	// awkward in shell scripts, and ";" is shown as "." by Linux.
	allowedChars = "abcdefghijklmnopqrstuvwxyz0123456789_-."
)

// CheckPath reports whether every component of the slash-separated path p
// is shown unchanged by a Linux guest. The error names p and the reason.
func CheckPath(p string) error {
	if p == "" || strings.HasPrefix(p, "/") || path.Clean(p) != p {
		return fmt.Errorf("iso name %q: want a clean relative path", p)
	}
	parts := strings.Split(p, "/")
	for i, part := range parts {
		var err error
		if i == len(parts)-1 {
			err = checkFileName(part)
		} else {
			err = checkDirName(part)
		}
		if err != nil {
			return fmt.Errorf("iso name %q would not appear as itself in a Linux guest: %w", p, err)
		}
	}
	return nil
}

func checkChars(name string) error {
	if name == "." || name == ".." {
		return fmt.Errorf("%q is reserved", name)
	}
	if strings.ToLower(name) != name {
		return fmt.Errorf("%q has upper-case letters (the writer lowercases them)", name)
	}
	for _, r := range name {
		if !strings.ContainsRune(allowedChars, r) {
			return fmt.Errorf("%q has the character %q, outside [a-z0-9_.-]", name, r)
		}
	}
	return nil
}

func checkFileName(name string) error {
	if err := checkChars(name); err != nil {
		return err
	}
	if n := strings.Count(name, "."); n > 1 {
		return fmt.Errorf("%q has %d dots (the writer turns all but the last into \"_\")", name, n)
	}
	if strings.HasSuffix(name, ".") {
		return fmt.Errorf("%q ends with a dot (the guest drops it)", name)
	}
	if ext := path.Ext(name); len(ext)-1 > extensionMax {
		return fmt.Errorf("%q has an extension longer than %d characters (the writer cuts it)", name, extensionMax)
	}
	if l := len(name) + len(";1"); l > fileIdentifierMax {
		return fmt.Errorf("%q is %d characters long, over %d (the writer cuts it)", name, len(name), fileIdentifierMax-len(";1"))
	}
	if got := GuestName(MangledFileName(name)); got != name {
		return fmt.Errorf("%q would appear as %q", name, got)
	}
	return nil
}

func checkDirName(name string) error {
	if err := checkChars(name); err != nil {
		return err
	}
	if len(name) > dirIdentifierMax {
		return fmt.Errorf("directory %q is %d characters long, over %d (the writer cuts it)", name, len(name), dirIdentifierMax)
	}
	return nil
}

// MangledFileName is the identifier the kdomanski writer records for the
// file name name (a copy of its unexported mangleFileName, kept in step with
// the version in go.mod by TestMangledFileNameMatchesWriter).
func MangledFileName(name string) string {
	name = strings.ToLower(name)
	split := strings.Split(name, ".")
	var base, ext string
	if len(split) == 1 {
		base = split[0]
	} else {
		base = strings.Join(split[:len(split)-1], "_")
		ext = split[len(split)-1]
	}
	ext = mangleD1(ext, extensionMax)
	max := fileIdentifierMax - len(";1")
	if ext != "" {
		max -= 1 + len(ext)
	}
	base = mangleD1(base, max)
	if ext != "" {
		return base + "." + ext + ";1"
	}
	return base + ";1"
}

const d1Chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_!\"%&'()*+,-./:;<=>?"

func mangleD1(s string, max int) string {
	s = strings.ToLower(s)
	var b strings.Builder
	for i := 0; i < len(s) && i < max; i++ {
		if strings.IndexByte(d1Chars, s[i]) >= 0 {
			b.WriteByte(s[i])
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// GuestName is the name Linux isofs (map=normal, no Rock Ridge) shows for the
// on-disc identifier id (fs/isofs/dir.c isofs_name_translate).
func GuestName(id string) string {
	var b strings.Builder
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c == 0 {
			break
		}
		if c >= 'A' && c <= 'Z' {
			c |= 0x20
		}
		if c == '.' && i == len(id)-3 && id[i+1] == ';' && id[i+2] == '1' {
			break
		}
		if c == ';' && i == len(id)-2 && id[i+1] == '1' {
			break
		}
		if c == ';' || c == '/' {
			c = '.'
		}
		b.WriteByte(c)
	}
	return b.String()
}
