package initramfs

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvmmanager/guest-agent/build/testenv"
)

func testArchive(t *testing.T, reverse bool) []byte {
	t.Helper()
	adds := []func(a *Archive) error{
		func(a *Archive) error { return a.File("bin/busybox", 0o755, []byte("#!binary")) },
		func(a *Archive) error { return a.Symlink("bin/sh", "busybox") },
		func(a *Archive) error { return a.File("etc/kvmtest/modules", 0o644, []byte("virtio\nvirtio_pci\n")) },
		func(a *Archive) error { return a.CharDevice("dev/console", 0o600, 5, 1) },
		func(a *Archive) error { return a.Dir("media/cdrom", 0o755) },
	}
	var a Archive
	for i := range adds {
		f := adds[i]
		if reverse {
			f = adds[len(adds)-1-i]
		}
		if err := f(&a); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	n, err := a.WriteTo(&buf)
	if err != nil || n != int64(buf.Len()) {
		t.Fatalf("WriteTo = %d, %v; wrote %d bytes", n, err, buf.Len())
	}
	return buf.Bytes()
}

func TestArchiveIsReproducible(t *testing.T) {
	if a, b := testArchive(t, false), testArchive(t, true); !bytes.Equal(a, b) {
		t.Fatal("the same entries added in another order give other bytes")
	}
}

func TestArchiveReadByCpio(t *testing.T) {
	testenv.NeedCommands(t, "cpio")
	data := testArchive(t, false)
	if len(data)%4 != 0 {
		t.Errorf("archive is %d bytes, not a multiple of 4", len(data))
	}
	dir := t.TempDir()
	cmd := exec.Command("cpio", "-i", "--make-directories", "--no-absolute-filenames", "--quiet", "--nonmatching", "dev/*")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(data)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v: %s", err, out)
	}
	list := exec.Command("cpio", "-tv", "--quiet")
	list.Stdin = bytes.NewReader(data)
	out, err := list.Output()
	if err != nil {
		t.Fatalf("cpio -tv: %v", err)
	}
	listing := string(out)
	for _, want := range []string{"crw-------", "5,   1", "lrwxrwxrwx", "bin/sh -> busybox", "drwxr-xr-x", "root     root"} {
		if !strings.Contains(listing, want) {
			t.Errorf("cpio -tv lacks %q:\n%s", want, listing)
		}
	}
	tests := []struct {
		path, content string
		mode          os.FileMode
	}{
		{"bin/busybox", "#!binary", 0o755},
		{"etc/kvmtest/modules", "virtio\nvirtio_pci\n", 0o644},
	}
	for _, tt := range tests {
		p := filepath.Join(dir, tt.path)
		b, err := os.ReadFile(p)
		if err != nil || string(b) != tt.content {
			t.Errorf("%s = %q, %v; want %q", tt.path, b, err, tt.content)
			continue
		}
		if st, _ := os.Stat(p); st.Mode().Perm() != tt.mode {
			t.Errorf("%s mode %v, want %v", tt.path, st.Mode().Perm(), tt.mode)
		}
	}
	if target, err := os.Readlink(filepath.Join(dir, "bin/sh")); err != nil || target != "busybox" {
		t.Errorf("bin/sh -> %q, %v", target, err)
	}
	if st, err := os.Stat(filepath.Join(dir, "media/cdrom")); err != nil || !st.IsDir() {
		t.Errorf("media/cdrom: %v", err)
	}
}

func TestArchiveRejectsEscapingPaths(t *testing.T) {
	for _, p := range []string{"", "/", "..", "../etc/passwd", "a/../../b"} {
		var a Archive
		if err := a.File(p, 0o644, nil); err == nil {
			t.Errorf("File(%q) accepted", p)
		}
	}
}
