package packages

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
)

// entry is one file of a package as the test sees it.
type entry struct {
	Mode  int64
	MTime int64
	Data  []byte
	Dir   bool
}

// pkgView is what a package holds, read without outside tools.
type pkgView struct {
	Files     map[string]entry  // data files by absolute path ("/usr/bin/...")
	Conffiles []string          // paths marked as configuration (noreplace on rpm)
	Scripts   map[string][]byte // maintainer scripts by the format's own name
	Control   map[string]string // deb control fields, rpm header strings, .PKGINFO keys
}

// --- deb: an ar archive of debian-binary, control.tar.gz, data.tar.gz ---

func readAr(t *testing.T, b []byte) map[string][]byte {
	t.Helper()
	if !bytes.HasPrefix(b, []byte("!<arch>\n")) {
		t.Fatalf("not an ar archive")
	}
	out := map[string][]byte{}
	for off := 8; off < len(b); {
		hdr := b[off : off+60]
		name := strings.TrimRight(strings.TrimSpace(string(hdr[0:16])), "/")
		size, err := strconv.Atoi(strings.TrimSpace(string(hdr[48:58])))
		if err != nil {
			t.Fatalf("ar member %q size: %v", name, err)
		}
		if mtime := strings.TrimSpace(string(hdr[16:28])); mtime != fmt.Sprint(testEpoch) {
			t.Errorf("ar member %s mtime %s, want %d", name, mtime, testEpoch)
		}
		out[name] = b[off+60 : off+60+size]
		off += 60 + size + size%2
	}
	return out
}

func readTar(t *testing.T, r io.Reader, name string) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("%s: %s: %v", name, h.Name, err)
		}
		if h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: %s owned by %d:%d, want root", name, h.Name, h.Uid, h.Gid)
		}
		p := "/" + strings.TrimPrefix(strings.TrimPrefix(h.Name, "./"), "/")
		out[strings.TrimSuffix(p, "/")] = entry{Mode: h.Mode & 0o7777, MTime: h.ModTime.Unix(), Data: data, Dir: h.Typeflag == tar.TypeDir}
	}
}

func gunzip(t *testing.T, b []byte) io.Reader {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return zr
}

func readDeb(t *testing.T, b []byte) pkgView {
	members := readAr(t, b)
	if got := string(members["debian-binary"]); got != "2.0\n" {
		t.Errorf("debian-binary = %q", got)
	}
	control := readTar(t, gunzip(t, members["control.tar.gz"]), "control.tar.gz")
	v := pkgView{Files: readTar(t, gunzip(t, members["data.tar.gz"]), "data.tar.gz"), Scripts: map[string][]byte{}, Control: map[string]string{}}
	for name, e := range control {
		switch name = strings.TrimPrefix(name, "/"); name {
		case "conffiles":
			v.Conffiles = strings.Fields(string(e.Data))
		case "control":
			for _, line := range strings.Split(string(e.Data), "\n") {
				if k, val, ok := strings.Cut(line, ": "); ok && !strings.HasPrefix(line, " ") {
					v.Control[k] = val
				}
			}
		case "postinst", "prerm", "postrm", "preinst":
			if e.Mode != 0o755 {
				t.Errorf("deb %s mode %o, want 755", name, e.Mode)
			}
			v.Scripts[name] = e.Data
		}
		if e.MTime != testEpoch && name != "" {
			t.Errorf("deb control member %s mtime %d, want %d", name, e.MTime, testEpoch)
		}
	}
	return v
}

// --- apk: concatenated gzip streams, control (.PKGINFO, scripts) then data ---

func readApk(t *testing.T, b []byte) pkgView {
	br := bufio.NewReader(bytes.NewReader(b))
	zr, err := gzip.NewReader(br)
	if err != nil {
		t.Fatal(err)
	}
	var streams []map[string]entry
	for i := 0; ; i++ {
		zr.Multistream(false)
		raw, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("apk gzip stream %d: %v", i, err)
		}
		streams = append(streams, readTar(t, bytes.NewReader(raw), fmt.Sprintf("apk stream %d", i)))
		if err := zr.Reset(br); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("apk gzip stream %d: %v", i+1, err)
		}
	}
	if len(streams) != 2 {
		t.Fatalf("apk has %d gzip streams, want 2 (control, data) for an unsigned package", len(streams))
	}
	v := pkgView{Files: streams[1], Scripts: map[string][]byte{}, Control: map[string]string{}}
	for name, e := range streams[0] {
		name = strings.TrimPrefix(name, "/")
		// nfpm writes .PKGINFO with a fixed zero time; the scripts must carry
		// SOURCE_DATE_EPOCH, not their files' own times.
		if want := int64(testEpoch); name != ".PKGINFO" && e.MTime != want {
			t.Errorf("apk control member %s mtime %d, want %d", name, e.MTime, want)
		}
		if name == ".PKGINFO" {
			for _, line := range strings.Split(string(e.Data), "\n") {
				if k, val, ok := strings.Cut(line, " = "); ok {
					v.Control[k] = val
				}
			}
			continue
		}
		v.Scripts[name] = e.Data
	}
	return v
}

// --- rpm: lead, signature header, main header, gzip cpio payload ---

const (
	rpmTagName        = 1000
	rpmTagVersion     = 1001
	rpmTagRelease     = 1002
	rpmTagBuildTime   = 1006
	rpmTagBuildHost   = 1007
	rpmTagArch        = 1022
	rpmTagPostin      = 1024
	rpmTagPreun       = 1025
	rpmTagPostun      = 1026
	rpmTagFileSizes   = 1028
	rpmTagFileModes   = 1030
	rpmTagFileMtimes  = 1034
	rpmTagFileFlags   = 1037
	rpmTagDirIndexes  = 1116
	rpmTagBasenames   = 1117
	rpmTagDirnames    = 1118
	rpmFileConfig     = 1 << 0
	rpmFileNoReplace  = 1 << 4
	rpmTypeInt16      = 3
	rpmTypeInt32      = 4
	rpmTypeString     = 6
	rpmTypeStringArr  = 8
	rpmTypeI18NString = 9
)

type rpmHeader map[uint32]any

// readRPMHeader parses the header at off and returns it and the offset after it.
func readRPMHeader(t *testing.T, b []byte, off int) (rpmHeader, int) {
	t.Helper()
	if !bytes.Equal(b[off:off+4], []byte{0x8e, 0xad, 0xe8, 0x01}) {
		t.Fatalf("no rpm header magic at %d", off)
	}
	n := int(binary.BigEndian.Uint32(b[off+8:]))
	size := int(binary.BigEndian.Uint32(b[off+12:]))
	index := b[off+16 : off+16+16*n]
	store := b[off+16+16*n : off+16+16*n+size]
	h := rpmHeader{}
	for i := 0; i < n; i++ {
		e := index[16*i:]
		tag, typ := binary.BigEndian.Uint32(e), binary.BigEndian.Uint32(e[4:])
		o, count := int(binary.BigEndian.Uint32(e[8:])), int(binary.BigEndian.Uint32(e[12:]))
		switch typ {
		case rpmTypeInt16:
			v := make([]int64, count)
			for j := range v {
				v[j] = int64(binary.BigEndian.Uint16(store[o+2*j:]))
			}
			h[tag] = v
		case rpmTypeInt32:
			v := make([]int64, count)
			for j := range v {
				v[j] = int64(binary.BigEndian.Uint32(store[o+4*j:]))
			}
			h[tag] = v
		case rpmTypeString, rpmTypeStringArr, rpmTypeI18NString:
			v := make([]string, count)
			for j := range v {
				end := bytes.IndexByte(store[o:], 0)
				v[j] = string(store[o : o+end])
				o += end + 1
			}
			h[tag] = v
		}
	}
	return h, off + 16 + 16*n + size
}

func (h rpmHeader) str(tag uint32) string {
	if v, ok := h[tag].([]string); ok && len(v) > 0 {
		return v[0]
	}
	return ""
}

func (h rpmHeader) ints(tag uint32) []int64 { v, _ := h[tag].([]int64); return v }

func readRPM(t *testing.T, b []byte) pkgView {
	if !bytes.Equal(b[:4], []byte{0xed, 0xab, 0xee, 0xdb}) {
		t.Fatal("no rpm lead")
	}
	_, off := readRPMHeader(t, b, 96) // signature header, padded to 8 bytes
	off = (off + 7) &^ 7
	h, _ := readRPMHeader(t, b, off)
	v := pkgView{Files: map[string]entry{}, Scripts: map[string][]byte{}, Control: map[string]string{
		"Name": h.str(rpmTagName), "Version": h.str(rpmTagVersion), "Release": h.str(rpmTagRelease),
		"Arch": h.str(rpmTagArch), "BuildHost": h.str(rpmTagBuildHost),
	}}
	if bt := h.ints(rpmTagBuildTime); len(bt) != 1 || bt[0] != testEpoch {
		t.Errorf("rpm build time %v, want %d", bt, testEpoch)
	}
	names, _ := h[rpmTagBasenames].([]string)
	dirs, _ := h[rpmTagDirnames].([]string)
	idx, modes, mtimes, flags, sizes := h.ints(rpmTagDirIndexes), h.ints(rpmTagFileModes), h.ints(rpmTagFileMtimes), h.ints(rpmTagFileFlags), h.ints(rpmTagFileSizes)
	for i, n := range names {
		p := dirs[idx[i]] + n
		v.Files[p] = entry{Mode: modes[i] & 0o7777, MTime: mtimes[i], Dir: modes[i]&0o170000 == 0o040000, Data: make([]byte, sizes[i])}
		if flags[i]&rpmFileConfig != 0 {
			if flags[i]&rpmFileNoReplace == 0 {
				t.Errorf("rpm %s is %%config without noreplace", p)
			}
			v.Conffiles = append(v.Conffiles, p)
		}
	}
	for name, tag := range map[string]uint32{"postin": rpmTagPostin, "preun": rpmTagPreun, "postun": rpmTagPostun} {
		if s := h.str(tag); s != "" {
			v.Scripts[name] = []byte(s)
		}
	}
	return v
}

func readPackage(t *testing.T, format, path string) pkgView {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	switch format {
	case "deb":
		return readDeb(t, b)
	case "rpm":
		return readRPM(t, b)
	case "apk":
		return readApk(t, b)
	}
	t.Fatalf("unknown format %s", format)
	return pkgView{}
}
