//go:build vmtest

package repo_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha1" //nolint:gosec
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvmmanager/guest-agent/build/repo"
	"github.com/kvmmanager/guest-agent/build/testenv"
)

func read(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func treeHashes(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			s := sha256.Sum256(read(t, p))
			rel, _ := filepath.Rel(dir, p)
			out[rel] = hex.EncodeToString(s[:])
		}
		return err
	})
	return out
}

// TestRepoMetadata builds a repository with one version, then adds a second,
// and checks the metadata with the tools that check it for real: gpgv for
// InRelease, Release.gpg and repomd.xml.asc, openssl for APKINDEX (Alpine's
// apk itself is not in Debian and has not checked it); the indexes' hashes;
// growth; and that the same packages always give the same bytes.
func TestRepoMetadata(t *testing.T) {
	f := shared(t)
	dir := t.TempDir()
	res := f.build(t, dir, f.loaded, oldVersion)
	if res.Debs != 2 || res.RPMs != 2 || res.APKs != 2 {
		t.Fatalf("first build: %+v", res)
	}
	res = f.build(t, dir, f.loaded, newVersion)
	if res.Debs != 4 || res.RPMs != 4 || res.APKs != 4 {
		t.Fatalf("second build did not grow the repository: %+v", res)
	}
	apt := filepath.Join(dir, repo.AptDir, "dists", repo.Suite)

	t.Run("apt Release lists the indexes with their hashes", func(t *testing.T) {
		rel := string(read(t, filepath.Join(apt, "Release")))
		for _, arch := range repo.AptArchitectures {
			for _, name := range []string{"Packages", "Packages.gz"} {
				p := "main/binary-" + arch + "/" + name
				s := sha256.Sum256(read(t, filepath.Join(apt, p)))
				if !strings.Contains(rel, hex.EncodeToString(s[:])) {
					t.Errorf("Release lacks the SHA256 of %s:\n%s", p, rel)
				}
			}
			pk := string(read(t, filepath.Join(apt, "main", "binary-"+arch, "Packages")))
			for _, v := range []string{oldVersion, newVersion} {
				if !strings.Contains(pk, "\nVersion: "+v+"\n") {
					t.Errorf("%s Packages lacks version %s:\n%s", arch, v, pk)
				}
			}
			if !strings.Contains(pk, "Architecture: "+arch+"\n") || !strings.HasPrefix(pk, "Package: kvmmanager-agent\n") {
				t.Errorf("%s Packages:\n%s", arch, pk)
			}
			// Each Filename exists with the listed SHA256.
			for _, para := range strings.Split(strings.TrimSpace(pk), "\n\n") {
				var file, sum string
				for _, l := range strings.Split(para, "\n") {
					if v, ok := strings.CutPrefix(l, "Filename: "); ok {
						file = v
					}
					if v, ok := strings.CutPrefix(l, "SHA256: "); ok {
						sum = v
					}
				}
				s := sha256.Sum256(read(t, filepath.Join(dir, repo.AptDir, file)))
				if hex.EncodeToString(s[:]) != sum {
					t.Errorf("%s: SHA256 in Packages does not match", file)
				}
			}
		}
	})

	t.Run("gpgv checks InRelease, Release.gpg and repomd.xml.asc", func(t *testing.T) {
		testenv.NeedCommands(t, "gpg", "gpgv")
		keyring := filepath.Join(t.TempDir(), "keyring.gpg")
		home, _ := os.MkdirTemp("", "gpg-")
		defer os.RemoveAll(home)
		must(t, []string{"GNUPGHOME=" + home}, "gpg", "--batch", "--no-default-keyring", "--keyring", keyring, "--import", f.keys.PGPPublic)
		must(t, nil, "gpgv", "--keyring", keyring, filepath.Join(apt, "InRelease"))
		must(t, nil, "gpgv", "--keyring", keyring, filepath.Join(apt, "Release.gpg"), filepath.Join(apt, "Release"))
		repomd := filepath.Join(dir, repo.RPMDir, "repodata", "repomd.xml")
		must(t, nil, "gpgv", "--keyring", keyring, repomd+".asc", repomd)
		// The key published at the top of the repository is the one that signs.
		published := filepath.Join(t.TempDir(), "published.gpg")
		must(t, []string{"GNUPGHOME=" + home}, "gpg", "--batch", "--no-default-keyring", "--keyring", published, "--import", filepath.Join(dir, repo.PublicKeyFile))
		must(t, nil, "gpgv", "--keyring", published, filepath.Join(apt, "InRelease"))
		// Tampered Release: refused.
		bad := filepath.Join(t.TempDir(), "Release")
		os.WriteFile(bad, bytes.Replace(read(t, filepath.Join(apt, "Release")), []byte("stable"), []byte("stabl3"), 1), 0o644)
		if out, err := run(t, nil, "gpgv", "--keyring", keyring, filepath.Join(apt, "Release.gpg"), bad); err == nil {
			t.Fatalf("gpgv accepted a tampered Release:\n%s", out)
		}
	})

	t.Run("repomd.xml names primary, filelists and other with their hashes", func(t *testing.T) {
		var md struct {
			Data []struct {
				Type     string `xml:"type,attr"`
				Checksum string `xml:"checksum"`
				Open     string `xml:"open-checksum"`
				Location struct {
					Href string `xml:"href,attr"`
				} `xml:"location"`
			} `xml:"data"`
		}
		if err := xml.Unmarshal(read(t, filepath.Join(dir, repo.RPMDir, "repodata", "repomd.xml")), &md); err != nil {
			t.Fatal(err)
		}
		types := map[string]bool{}
		for _, d := range md.Data {
			types[d.Type] = true
			gz := read(t, filepath.Join(dir, repo.RPMDir, d.Location.Href))
			s := sha256.Sum256(gz)
			if hex.EncodeToString(s[:]) != d.Checksum {
				t.Errorf("%s: checksum mismatch", d.Location.Href)
			}
			z, err := gzip.NewReader(bytes.NewReader(gz))
			if err != nil {
				t.Fatal(err)
			}
			plain, _ := io.ReadAll(z)
			s = sha256.Sum256(plain)
			if hex.EncodeToString(s[:]) != d.Open {
				t.Errorf("%s: open-checksum mismatch", d.Location.Href)
			}
			if d.Type == "primary" && (!bytes.Contains(plain, []byte(`ver="`+newVersion+`"`)) || !bytes.Contains(plain, []byte(`<rpm:entry name="kvmmanager-agent"`))) {
				t.Errorf("primary.xml:\n%s", plain)
			}
		}
		if len(types) != 3 || !types["primary"] || !types["filelists"] || !types["other"] {
			t.Errorf("repomd data %v", types)
		}
		gz, _ := filepath.Glob(filepath.Join(dir, repo.RPMDir, "repodata", "*.xml.gz"))
		if len(gz) != 3 {
			t.Errorf("repodata keeps %d metadata files, want the 3 repomd.xml names: %v", len(gz), gz)
		}
	})

	t.Run("APKINDEX is signed and names every apk by its control checksum", func(t *testing.T) {
		testenv.NeedCommands(t, "openssl")
		for _, arch := range repo.AlpineArchitectures {
			d := filepath.Join(dir, repo.AlpineDir, arch)
			streams := gzipStreams(t, read(t, filepath.Join(d, "APKINDEX.tar.gz")))
			if len(streams) != 2 {
				t.Fatalf("%s APKINDEX.tar.gz: %d gzip streams, want signature and index", arch, len(streams))
			}
			members := tarMembers(t, streams[0])
			sigName := ".SIGN.RSA." + f.loaded.APKKeyName()
			if _, ok := members[sigName]; !ok || len(members) != 1 {
				t.Fatalf("signature stream members %v, want %s", keys(members), sigName)
			}
			pub := filepath.Join(dir, f.loaded.APKKeyName())
			opensslVerify(t, pub, members[sigName], streams[1], true)
			bad := append([]byte(nil), streams[1]...)
			bad[len(bad)/2] ^= 1
			opensslVerify(t, pub, members[sigName], bad, false)
			index := string(tarMembers(t, streams[1])["APKINDEX"])
			apks, _ := filepath.Glob(filepath.Join(d, "*.apk"))
			if len(apks) != 2 {
				t.Fatalf("%s: %v", arch, apks)
			}
			for _, a := range apks {
				st := gzipStreams(t, read(t, a))
				sum := sha1.Sum(st[1]) //nolint:gosec // control stream of a signed apk
				c := "C:Q1" + base64.StdEncoding.EncodeToString(sum[:]) + "\n"
				if !strings.Contains(index, c) {
					t.Errorf("APKINDEX lacks %s for %s:\n%s", c, a, index)
				}
			}
			for _, v := range []string{oldVersion, newVersion} {
				if !strings.Contains(index, "P:kvmmanager-agent\nV:"+v) {
					t.Errorf("APKINDEX lacks version %s:\n%s", v, index)
				}
			}
		}
	})

	t.Run("same packages, same bytes; unsigned has no signatures", func(t *testing.T) {
		again := t.TempDir()
		f.build(t, again, f.loaded, oldVersion)
		f.build(t, again, f.loaded, newVersion)
		a, b := treeHashes(t, dir), treeHashes(t, again)
		if len(a) != len(b) {
			t.Errorf("%d files vs %d", len(a), len(b))
		}
		for k, v := range a {
			if b[k] != v {
				t.Errorf("%s differs between two builds from the same packages", k)
			}
		}
		plain := t.TempDir()
		f.build(t, plain, nil, oldVersion)
		for _, p := range []string{"deb/dists/stable/InRelease", "deb/dists/stable/Release.gpg", "rpm/repodata/repomd.xml.asc", repo.PublicKeyFile} {
			if _, err := os.Stat(filepath.Join(plain, p)); err == nil {
				t.Errorf("unsigned repository has %s", p)
			}
		}
		if n := len(gzipStreams(t, read(t, filepath.Join(plain, "alpine", "x86_64", "APKINDEX.tar.gz")))); n != 1 {
			t.Errorf("unsigned APKINDEX.tar.gz has %d streams", n)
		}
	})
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func gzipStreams(t *testing.T, b []byte) [][]byte {
	t.Helper()
	var out [][]byte
	r := bytes.NewReader(b)
	for r.Len() > 0 {
		start := len(b) - r.Len()
		z, err := gzip.NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		z.Multistream(false)
		io.Copy(io.Discard, z)
		out = append(out, b[start:len(b)-r.Len()])
	}
	return out
}

func tarMembers(t *testing.T, tgz []byte) map[string][]byte {
	t.Helper()
	z, err := gzip.NewReader(bytes.NewReader(tgz))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	tr := tar.NewReader(bufio.NewReader(z))
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		out[h.Name], _ = io.ReadAll(tr)
	}
	return out
}

func opensslVerify(t *testing.T, pub string, sig, data []byte, wantOK bool) {
	t.Helper()
	d := t.TempDir()
	os.WriteFile(filepath.Join(d, "sig"), sig, 0o644)
	os.WriteFile(filepath.Join(d, "data"), data, 0o644)
	out, err := run(t, nil, "openssl", "dgst", "-sha1", "-verify", pub, "-signature", filepath.Join(d, "sig"), filepath.Join(d, "data"))
	if ok := err == nil && strings.Contains(out, "Verified OK"); ok != wantOK {
		t.Fatalf("openssl dgst -verify: ok=%v, want %v: %v\n%s", ok, wantOK, err, out)
	}
}
