package iso

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kdomanski/iso9660"
)

var epoch = time.Unix(1700000000, 0).UTC() // 2023-11-14 22:13:20 UTC

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func sampleEntries(t *testing.T) []Entry {
	src := t.TempDir()
	big := strings.Repeat("0123456789abcdef", 300) // spans several sectors
	return []Entry{
		{Path: "install.sh", Src: writeFile(t, src, "install.sh", "#!/bin/sh\necho install\n")},
		{Path: "install-debian.sh", Src: writeFile(t, src, "install-debian.sh", "#!/bin/sh\n")},
		{Path: "kvmmanager-agent.service", Data: []byte("[Unit]\n")},
		{Path: "60-kvmmanager-agent.rules", Data: []byte("SUBSYSTEM==\"virtio-ports\"\n")},
		{Path: "readme.txt", Data: []byte("read me\n")},
		{Path: "empty", Data: nil},
		{Path: "linux-amd64/kvmmanager-agent", Src: writeFile(t, src, "agent", big)},
		{Path: "packages/amd64/kvmmanager-agent.deb", Data: []byte("deb")},
		{Path: "packages/arm64/kvmmanager-agent.apk", Data: []byte("apk")},
	}
}

func TestWriteReadBack(t *testing.T) {
	entries := sampleEntries(t)
	out := filepath.Join(t.TempDir(), "sub", "test.iso")
	if err := Write(out, entries, Options{Time: epoch}); err != nil {
		t.Fatal(err)
	}
	got, err := ReadAll(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(entries) {
		t.Errorf("image holds %d files %v, want %d %v", len(got), keys(got), len(entries), Paths(entries))
	}
	for _, e := range entries {
		want, err := e.Contents()
		if err != nil {
			t.Fatal(err)
		}
		b, ok := got[e.Path]
		if !ok {
			t.Errorf("%s: missing from the image (have %v)", e.Path, keys(got))
			continue
		}
		if !bytes.Equal(b, want) {
			t.Errorf("%s: %d bytes differ from the source's %d", e.Path, len(b), len(want))
		}
	}

	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := iso9660.OpenImage(f)
	if err != nil {
		t.Fatal(err)
	}
	if label, err := img.Label(); err != nil || label != VolumeID {
		t.Errorf("label = %q, %v; want %q", label, err, VolumeID)
	}
}

func TestWriteDates(t *testing.T) {
	out := filepath.Join(t.TempDir(), "test.iso")
	if err := Write(out, sampleEntries(t), Options{Time: epoch}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	pvd := make([]byte, sectorSize)
	if _, err := f.ReadAt(pvd, pvdSector*sectorSize); err != nil {
		t.Fatal(err)
	}
	want := iso9660.VolumeDescriptorTimestampFromTime(epoch)
	for name, off := range map[string]int{"creation": pvdCreated, "modification": pvdModified, "effective": pvdEffective} {
		var ts iso9660.VolumeDescriptorTimestamp
		if err := ts.UnmarshalBinary(pvd[off : off+17]); err != nil {
			t.Fatalf("%s date: %v", name, err)
		}
		if ts != want {
			t.Errorf("volume %s date = %+v, want %+v", name, ts, want)
		}
	}
	if string(pvd[pvdExpires:pvdExpires+16]) != "0000000000000000" {
		t.Errorf("volume expiration date = %q, want unset", pvd[pvdExpires:pvdExpires+16])
	}
	if id := strings.TrimRight(string(pvd[pvdSystemID:pvdSystemID+32]), " "); id != "LINUX" {
		t.Errorf("system identifier = %q, want LINUX whatever the build OS", id)
	}

	img, err := iso9660.OpenImage(f)
	if err != nil {
		t.Fatal(err)
	}
	root, err := img.RootDir()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	var walk func(dir *iso9660.File, name string)
	walk = func(dir *iso9660.File, name string) {
		n++
		if !dir.ModTime().Equal(epoch) {
			t.Errorf("%s: directory record date %v, want %v", name, dir.ModTime(), epoch)
		}
		dot, err := dir.GetDotEntry()
		if err != nil {
			t.Fatal(err)
		}
		if !dot.ModTime().Equal(epoch) {
			t.Errorf("%s/.: date %v, want %v", name, dot.ModTime(), epoch)
		}
		children, err := dir.GetAllChildren()
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range children { // includes the ".." record
			if c.IsDir() && c.Name() != "\x00" && c.Name() != "\x01" {
				walk(c, name+"/"+c.Name())
				continue
			}
			n++
			if !c.ModTime().Equal(epoch) {
				t.Errorf("%s/%q: date %v, want %v", name, c.Name(), c.ModTime(), epoch)
			}
		}
	}
	walk(root, "")
	if n < 12 {
		t.Errorf("checked %d records, want every file and directory", n)
	}
}

func TestWriteIsReproducible(t *testing.T) {
	a := filepath.Join(t.TempDir(), "a.iso")
	b := filepath.Join(t.TempDir(), "b.iso")
	entries := sampleEntries(t)
	if err := Write(a, entries, Options{Time: epoch}); err != nil {
		t.Fatal(err)
	}
	if err := Write(b, entries, Options{Time: epoch}); err != nil {
		t.Fatal(err)
	}
	ab, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	if !bytes.Equal(ab, bb) {
		t.Fatal("two images of the same entries differ")
	}
	c := filepath.Join(t.TempDir(), "c.iso")
	if err := Write(c, entries, Options{Time: epoch.Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	if cb, _ := os.ReadFile(c); bytes.Equal(ab, cb) {
		t.Fatal("images with different dates are identical: dates are not applied")
	}
}

func TestCheckPath(t *testing.T) {
	tests := []struct {
		path string
		want string // "" for accepted, else a substring of the error
	}{
		{"install.sh", ""},
		{"install-debian.sh", ""},
		{"uninstall.sh", ""},
		{"install-common.sh", ""},
		{"config.json", ""},
		{"kvmmanager-agent.service", ""},
		{"60-kvmmanager-agent.rules", ""},
		{"kvmmanager-agent.initd", ""},
		{"kvmmanager-agent.confd", ""},
		{"sha256sums.txt", ""},
		{"linux-arm64/kvmmanager-agent", ""},
		{"packages/amd64/kvmmanager-agent.rpm", ""},
		{"abcdefghijklmnopqrstuvwxyzab", ""},           // 28 characters: the longest plain name
		{"abcdefghijklmnopqrstuvw.json", ""},           // 28 with an extension
		{"Install.sh", "upper-case"},                   // lowercased by the writer
		{"kvmmanager-agent.tar.gz", "2 dots"},          // first dot becomes "_"
		{"abcdefghijklmnopqrstuvwxyzabc", "over 28"},   // cut
		{"kvmmanager-agent-installer.service", "over"}, // cut
		{"file.extension9", "extension longer than 8"}, // extension cut
		{"bad name.sh", "outside"},                     // space
		{"semi;colon", "outside"},                      // shown as a dot
		{"trailing.", "ends with a dot"},               //
		{"Packages/amd64/x.deb", "upper-case"},         // directory names too
		{"packages/" + strings.Repeat("d", 32) + "/x", "over 31"},
		{"/abs.sh", "clean relative path"},
		{"a/../b.sh", "clean relative path"},
	}
	for _, tc := range tests {
		err := CheckPath(tc.path)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("CheckPath(%q) = %v, want accepted", tc.path, err)
		case tc.want != "" && err == nil:
			t.Errorf("CheckPath(%q) accepted, want an error containing %q", tc.path, tc.want)
		case tc.want != "" && (!strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.path)):
			t.Errorf("CheckPath(%q) = %v, want an error naming the path and containing %q", tc.path, err, tc.want)
		}
	}
}

func TestWriteRejectsBadNames(t *testing.T) {
	tests := []struct {
		name  string
		extra []Entry
		want  string
	}{
		{"upper case", []Entry{{Path: "README.txt", Data: []byte("x")}}, `"README.txt"`},
		{"two dots", []Entry{{Path: "packages/amd64/kvmmanager-agent.x86_64.rpm", Data: []byte("x")}}, "kvmmanager-agent.x86_64.rpm"},
		{"duplicate", []Entry{{Path: "install.sh", Data: []byte("x")}}, `"install.sh" is given twice`},
		{"file and directory", []Entry{{Path: "packages", Data: []byte("x")}}, `"packages" is both a file and a directory`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			out := filepath.Join(dir, "bad.iso")
			err := Write(out, append(sampleEntries(t), tc.extra...), Options{Time: epoch})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Write = %v, want an error containing %s", err, tc.want)
			}
			if left, _ := os.ReadDir(dir); len(left) != 0 {
				t.Errorf("a failed Write left %v behind", left)
			}
		})
	}
}

// TestMangledFileNameMatchesWriter keeps MangledFileName in step with the
// writer in go.mod: the identifiers on disc must be exactly the predicted
// ones, for names the rule accepts and for names it rejects.
func TestMangledFileNameMatchesWriter(t *testing.T) {
	names := []string{"install-debian.sh", "config.json", "kvmmanager-agent", "60-kvmmanager-agent.rules",
		"Upper.TXT", "a.b.c", "x.extension9", strings.Repeat("n", 40) + ".sh", "sp ace", "trailing."}
	w, err := iso9660.NewWriter()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Cleanup()
	for _, n := range names {
		if err := w.AddFile(strings.NewReader(n), n); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "m.iso")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := w.WriteTo(f, "T"); err != nil {
		t.Fatal(err)
	}
	onDisc := map[string]bool{}
	for _, id := range rootIdentifiers(t, f) {
		onDisc[id] = true
	}
	for _, n := range names {
		m := MangledFileName(n)
		if !onDisc[m] {
			t.Errorf("MangledFileName(%q) = %q, not on the disc %v", n, m, onDisc)
		}
		if ok := CheckPath(n) == nil; ok != (GuestName(m) == n) {
			t.Errorf("CheckPath(%q) accepted=%v but the guest shows %q", n, ok, GuestName(m))
		}
	}
}

func TestGuestName(t *testing.T) {
	for id, want := range map[string]string{
		"install.sh;1":       "install.sh",
		"INSTALL.SH;1":       "install.sh",
		"kvmmanager-agent;1": "kvmmanager-agent",
		"noext.;1":           "noext",
		"a;b;1":              "a.b",
		"linux-amd64":        "linux-amd64",
	} {
		if got := GuestName(id); got != want {
			t.Errorf("GuestName(%q) = %q, want %q", id, got, want)
		}
	}
}

// rootIdentifiers lists the raw identifiers of the root directory of f.
func rootIdentifiers(t *testing.T, f *os.File) []string {
	t.Helper()
	pvd := make([]byte, sectorSize)
	if _, err := f.ReadAt(pvd, pvdSector*sectorSize); err != nil {
		t.Fatal(err)
	}
	root := pvd[pvdRootRecord:]
	buf := make([]byte, binary.LittleEndian.Uint32(root[recLength:]))
	if _, err := f.ReadAt(buf, int64(binary.LittleEndian.Uint32(root[recExtent:]))*sectorSize); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for off := 0; off < len(buf); {
		n := int(buf[off])
		if n == 0 {
			off = (off/sectorSize + 1) * sectorSize
			continue
		}
		if id := string(buf[off+recID : off+recID+int(buf[off+recIDLen])]); id != "\x00" && id != "\x01" {
			ids = append(ids, id)
		}
		off += n
	}
	return ids
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
