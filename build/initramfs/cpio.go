package initramfs

import (
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// Entry is one file, directory or symbolic link of an archive.
type Entry struct {
	Path string      // slash-separated, relative to the root ("bin/busybox")
	Mode fs.FileMode // permission bits plus fs.ModeDir or fs.ModeSymlink
	Data []byte      // file content, or the target of a symbolic link
	// Major and Minor are the device numbers of a character device
	// (Mode has fs.ModeDevice|fs.ModeCharDevice).
	Major, Minor uint32
}

// Archive is a set of entries written as one newc cpio archive. The same
// entries always give the same bytes: entries are written sorted by path,
// every owner is root, every time stamp is zero, inode numbers are
// sequential.
type Archive struct {
	entries map[string]Entry
}

// Add adds (or replaces) an entry; missing parent directories are added
// with mode 0755.
func (a *Archive) Add(e Entry) error {
	p := path.Clean(strings.TrimPrefix(e.Path, "/"))
	if p == "." || strings.HasPrefix(p, "../") || p == ".." {
		return fmt.Errorf("cpio entry %q: want a path inside the archive", e.Path)
	}
	if a.entries == nil {
		a.entries = map[string]Entry{}
	}
	e.Path = p
	a.entries[p] = e
	for d := path.Dir(p); d != "."; d = path.Dir(d) {
		if _, ok := a.entries[d]; !ok {
			a.entries[d] = Entry{Path: d, Mode: fs.ModeDir | 0o755}
		}
	}
	return nil
}

// File adds a regular file.
func (a *Archive) File(p string, mode fs.FileMode, data []byte) error {
	return a.Add(Entry{Path: p, Mode: mode.Perm(), Data: data})
}

// Dir adds a directory.
func (a *Archive) Dir(p string, mode fs.FileMode) error {
	return a.Add(Entry{Path: p, Mode: fs.ModeDir | mode.Perm()})
}

// Symlink adds a symbolic link p pointing to target.
func (a *Archive) Symlink(p, target string) error {
	return a.Add(Entry{Path: p, Mode: fs.ModeSymlink | 0o777, Data: []byte(target)})
}

// CharDevice adds a character device node p with the device numbers
// major:minor (the kernel needs /dev/console before any devtmpfs is mounted).
func (a *Archive) CharDevice(p string, mode fs.FileMode, major, minor uint32) error {
	return a.Add(Entry{Path: p, Mode: fs.ModeDevice | fs.ModeCharDevice | mode.Perm(), Major: major, Minor: minor})
}

// Unix file type bits of the cpio mode field.
const (
	cpioDir     = 0o040000
	cpioRegular = 0o100000
	cpioSymlink = 0o120000
	cpioCharDev = 0o020000
)

// WriteTo writes the archive in the "newc" format (the one the Linux kernel
// unpacks as an initramfs) followed by the TRAILER!!! entry.
func (a *Archive) WriteTo(w io.Writer) (int64, error) {
	names := make([]string, 0, len(a.entries))
	for p := range a.entries {
		names = append(names, p)
	}
	sort.Strings(names) // parents sort before their children
	cw := &countWriter{w: w}
	for i, p := range names {
		e := a.entries[p]
		mode := uint32(e.Mode.Perm())
		switch {
		case e.Mode.IsDir():
			mode |= cpioDir
		case e.Mode&fs.ModeSymlink != 0:
			mode |= cpioSymlink
		case e.Mode&fs.ModeCharDevice != 0:
			mode |= cpioCharDev
		default:
			mode |= cpioRegular
		}
		nlink := 1
		if e.Mode.IsDir() {
			nlink = 2
		}
		writeRecord(cw, uint32(i+1), mode, uint32(nlink), e.Major, e.Minor, p, e.Data)
	}
	writeRecord(cw, 0, 0, 1, 0, 0, "TRAILER!!!", nil)
	return cw.n, cw.err
}

// writeRecord writes one newc header, the name and the data, each padded to
// a multiple of four bytes.
func writeRecord(w *countWriter, ino, mode, nlink, rmajor, rminor uint32, name string, data []byte) {
	// magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
	// devminor, rdevmajor, rdevminor, namesize, check
	fmt.Fprintf(w, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rmajor, rminor, len(name)+1, 0)
	io.WriteString(w, name)
	w.Write([]byte{0})
	w.pad()
	w.Write(data)
	w.pad()
}

type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
	return n, err
}

func (c *countWriter) pad() {
	if r := c.n % 4; r != 0 {
		c.Write(make([]byte, 4-r))
	}
}
