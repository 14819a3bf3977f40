//go:build vmtest

package pipeline

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/kvmmanager/guest-agent/build/signing/signingtest"
	"github.com/kvmmanager/guest-agent/build/testenv"
)

// testKeys makes throwaway keys dated a day before the build's
// SOURCE_DATE_EPOCH (a key must predate the signatures it makes).
func testKeys(t *testing.T) signingtest.Keys {
	t.Helper()
	info, err := Info(Options{Root: repoRoot})
	if err != nil {
		t.Fatal(err)
	}
	return signingtest.Generate(t, t.TempDir(), info.Time().Add(-24*time.Hour))
}

func release(t *testing.T, dist, version string, keys *signingtest.Keys) (Manifest, string) {
	t.Helper()
	var out bytes.Buffer
	opts := Options{Root: repoRoot, Dist: dist, Version: version, Out: &out}
	if keys != nil {
		opts.Getenv = keys.Getenv
	}
	m, err := Release(context.Background(), opts)
	if err != nil {
		t.Fatalf("release into %s: %v\n%s", dist, err, out.String())
	}
	return m, out.String()
}

func assetsOf(m Manifest, format string) []Asset {
	var out []Asset
	for _, a := range m.Assets {
		if a.Format == format {
			out = append(out, a)
		}
	}
	return out
}

func runCmd(t *testing.T, env []string, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// gpgHome is a fresh GnuPG home with the public key imported.
func gpgHome(t *testing.T, pub string) []string {
	t.Helper()
	home, err := os.MkdirTemp("", "gpg-") // short: gpg-agent's socket path has a length limit
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	env := []string{"GNUPGHOME=" + home}
	if out, err := runCmd(t, env, "gpg", "--batch", "--import", pub); err != nil {
		t.Fatalf("gpg --import %s: %v\n%s", pub, err, out)
	}
	return env
}

func tamper(t *testing.T, src, dst string, at func(size int) int) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	b[at(len(b))] ^= 0x01
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSignedRelease signs with throwaway keys and checks every signature
// with the tool a user has: gpg for SHA256SUMS.asc and the .deb's
// _gpgorigin, rpm -K for the .rpm, openssl for the .apk (Alpine's apk itself
// is not in Debian and has not checked it).
func TestSignedRelease(t *testing.T) {
	keys := testKeys(t)
	dist := t.TempDir()
	m, log := release(t, dist, "1.2.3", &keys)
	if !strings.Contains(log, "signing: OpenPGP key ") {
		t.Errorf("no signing line in the log:\n%s", log)
	}
	if m.Signing.OpenPGPFingerprint == "" || !strings.HasSuffix(m.Signing.APKKeyName, ".rsa.pub") || m.Signing.SignatureTime != m.SourceDateEpoch {
		t.Errorf("manifest signing %+v", m.Signing)
	}
	if s := assetsOf(m, "signature"); len(s) != 1 || s[0].File != SumsSignature || s[0].Describes != SumsFile {
		t.Errorf("manifest signatures %+v", s)
	}
	if k := assetsOf(m, "key"); len(k) != 2 {
		t.Errorf("manifest keys %+v", k)
	}
	for _, f := range []string{"deb", "rpm", "apk"} {
		for _, a := range assetsOf(m, f) {
			if !a.Signed {
				t.Errorf("%s not marked signed", a.File)
			}
		}
	}
	sums := filepath.Join(dist, SumsFile)
	sig := filepath.Join(dist, SumsSignature)
	pub := filepath.Join(dist, PublicKeyFile)

	t.Run("signature time is SOURCE_DATE_EPOCH", func(t *testing.T) {
		f, err := os.Open(sig)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		blk, err := armor.Decode(f)
		if err != nil {
			t.Fatal(err)
		}
		p, err := packet.Read(blk.Body)
		if err != nil {
			t.Fatal(err)
		}
		s, ok := p.(*packet.Signature)
		if !ok || s.CreationTime.Unix() != m.SourceDateEpoch {
			t.Fatalf("signature packet %T dated %v, want %d", p, s.CreationTime, m.SourceDateEpoch)
		}
	})

	t.Run("gpg --verify SHA256SUMS.asc", func(t *testing.T) {
		testenv.NeedCommands(t, "gpg")
		env := gpgHome(t, pub)
		out, err := runCmd(t, env, "gpg", "--batch", "--verify", sig, sums)
		if err != nil || !strings.Contains(out, "Good signature") {
			t.Fatalf("gpg --verify: %v\n%s", err, out)
		}
		bad := filepath.Join(t.TempDir(), SumsFile)
		tamper(t, sums, bad, func(n int) int { return 3 })
		if out, err := runCmd(t, env, "gpg", "--batch", "--verify", sig, bad); err == nil || !strings.Contains(out, "BAD signature") {
			t.Fatalf("gpg accepted a tampered SHA256SUMS: %v\n%s", err, out)
		}
	})

	t.Run("gpg verifies the deb's _gpgorigin", func(t *testing.T) {
		testenv.NeedCommands(t, "gpg")
		env := gpgHome(t, pub)
		for _, a := range assetsOf(m, "deb") {
			members := arMembers(t, filepath.Join(dist, a.File))
			if len(members) != 4 || members[3].name != "_gpgorigin" {
				t.Fatalf("%s members %v", a.File, members)
			}
			dir := t.TempDir()
			data := filepath.Join(dir, "signed")
			var signed []byte
			for _, mb := range members[:3] {
				signed = append(signed, mb.data...)
			}
			os.WriteFile(data, signed, 0o644)
			os.WriteFile(filepath.Join(dir, "sig"), members[3].data, 0o644)
			if out, err := runCmd(t, env, "gpg", "--batch", "--verify", filepath.Join(dir, "sig"), data); err != nil {
				t.Fatalf("%s: gpg --verify _gpgorigin: %v\n%s", a.File, err, out)
			}
		}
	})

	t.Run("rpm -K", func(t *testing.T) {
		testenv.NeedCommands(t, "rpm", "rpmkeys")
		db := t.TempDir()
		if out, err := runCmd(t, nil, "rpmkeys", "--dbpath", db, "--import", pub); err != nil {
			t.Fatalf("rpmkeys --import: %v\n%s", err, out)
		}
		for _, a := range assetsOf(m, "rpm") {
			p := filepath.Join(dist, a.File)
			out, err := runCmd(t, nil, "rpm", "--dbpath", db, "-K", p)
			if err != nil || !strings.Contains(out, "signatures OK") {
				t.Fatalf("rpm -K %s: %v\n%s", a.File, err, out)
			}
			t.Logf("rpm -K: %s", strings.TrimSpace(out))
			bad := filepath.Join(t.TempDir(), a.File)
			tamper(t, p, bad, func(n int) int { return n - 100 })
			if out, err := runCmd(t, nil, "rpm", "--dbpath", db, "-K", bad); err == nil || !strings.Contains(out, "NOT OK") {
				t.Fatalf("rpm -K accepted a tampered rpm: %v\n%s", err, out)
			}
			// Without the key the signature cannot be checked.
			if out, err := runCmd(t, nil, "rpm", "--dbpath", t.TempDir(), "-K", p); err == nil {
				t.Fatalf("rpm -K without the key succeeded:\n%s", out)
			}
		}
	})

	t.Run("openssl verifies the apk signature", func(t *testing.T) {
		testenv.NeedCommands(t, "openssl")
		keyFile := filepath.Join(dist, m.Signing.APKKeyName)
		for _, a := range assetsOf(m, "apk") {
			streams := gzipStreams(t, filepath.Join(dist, a.File))
			if len(streams) != 3 {
				t.Fatalf("%s: %d gzip streams, want signature, control, data", a.File, len(streams))
			}
			name, sigData := firstTarMember(t, streams[0])
			if name != ".SIGN.RSA."+m.Signing.APKKeyName {
				t.Fatalf("%s: signature member %q", a.File, name)
			}
			VerifyOpenSSL(t, keyFile, sigData, streams[1], true)
			bad := append([]byte(nil), streams[1]...)
			bad[len(bad)/2] ^= 1
			VerifyOpenSSL(t, keyFile, sigData, bad, false)
		}
	})
}

// VerifyOpenSSL checks an apk-style RSA/SHA-1 signature of data with
// openssl dgst -verify.
func VerifyOpenSSL(t *testing.T, pubKey string, sig, data []byte, wantOK bool) {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "sig"), sig, 0o644)
	os.WriteFile(filepath.Join(dir, "data"), data, 0o644)
	out, err := runCmd(t, nil, "openssl", "dgst", "-sha1", "-verify", pubKey, "-signature", filepath.Join(dir, "sig"), filepath.Join(dir, "data"))
	if ok := err == nil && strings.Contains(out, "Verified OK"); ok != wantOK {
		t.Fatalf("openssl dgst -verify: ok=%v, want %v: %v\n%s", ok, wantOK, err, out)
	}
}

type arMember struct {
	name string
	data []byte
}

func arMembers(t *testing.T, p string) []arMember {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("!<arch>\n")) {
		t.Fatalf("%s: not an ar archive", p)
	}
	var out []arMember
	for off := 8; off < len(b); {
		h := b[off : off+60]
		var size int
		for _, c := range strings.TrimSpace(string(h[48:58])) {
			size = size*10 + int(c-'0')
		}
		name := strings.TrimSuffix(strings.TrimSpace(string(h[0:16])), "/")
		out = append(out, arMember{name, b[off+60 : off+60+size]})
		off += 60 + size + size%2
	}
	return out
}

// arPrefix is the deb without its last member (the unsigned deb).
func arWithout(t *testing.T, p string, drop string) []byte {
	t.Helper()
	b, _ := os.ReadFile(p)
	off := 8
	for off < len(b) {
		name := strings.TrimSuffix(strings.TrimSpace(string(b[off:off+16])), "/")
		var size int
		for _, c := range strings.TrimSpace(string(b[off+48 : off+58])) {
			size = size*10 + int(c-'0')
		}
		if name == drop {
			return b[:off]
		}
		off += 60 + size + size%2
	}
	return b
}

// gzipStreams splits a file into its concatenated gzip streams (an .apk).
func gzipStreams(t *testing.T, p string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	r := bytes.NewReader(b)
	for r.Len() > 0 {
		start := len(b) - r.Len()
		z, err := gzip.NewReader(r)
		if err != nil {
			t.Fatalf("%s: gzip stream at %d: %v", p, start, err)
		}
		z.Multistream(false)
		if _, err := io.Copy(io.Discard, z); err != nil {
			t.Fatal(err)
		}
		out = append(out, b[start:len(b)-r.Len()])
	}
	return out
}

func firstTarMember(t *testing.T, tgz []byte) (string, []byte) {
	t.Helper()
	z, err := gzip.NewReader(bytes.NewReader(tgz))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(z)
	h, err := tr.Next()
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(tr)
	return h.Name, data
}

// rpmAfterSignature is the rpm without its lead and signature header: the
// header and payload the signature covers.
func rpmAfterSignature(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	off := 96
	if !bytes.Equal(b[off:off+3], []byte{0x8e, 0xad, 0xe8}) {
		t.Fatalf("%s: no signature header magic", p)
	}
	n := int(binary.BigEndian.Uint32(b[off+8:]))
	size := int(binary.BigEndian.Uint32(b[off+12:]))
	off += 16 + 16*n + size
	off += (8 - off%8) % 8
	return b[off:]
}

// TestReleaseReproducible builds one commit twice signed and twice unsigned
// into four directories: each pair is byte-identical, and what is not a
// signature is the same bytes signed or not.
func TestReleaseReproducible(t *testing.T) {
	keys := testKeys(t)
	a, b, u1, u2 := t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir()
	ma, _ := release(t, a, "1.2.3", &keys)
	release(t, b, "1.2.3", &keys)
	mu, log := release(t, u1, "1.2.3", nil)
	release(t, u2, "1.2.3", nil)
	if !strings.Contains(log, "building UNSIGNED") {
		t.Errorf("unsigned build does not say so:\n%s", log)
	}
	for _, pair := range [][2]string{{a, b}, {u1, u2}} {
		ha, hb := distHashes(t, pair[0]), distHashes(t, pair[1])
		if len(ha) != len(hb) {
			t.Errorf("%d files vs %d", len(ha), len(hb))
		}
		for f, h := range ha {
			if hb[f] != h {
				t.Errorf("%s differs between two builds of one commit (%s, %s)", f, pair[0], pair[1])
			}
		}
	}
	if _, err := os.Stat(filepath.Join(u1, SumsSignature)); err == nil {
		t.Errorf("unsigned release has %s", SumsSignature)
	}
	// Unsigned payloads are the same bytes either way.
	hu := distHashes(t, u1)
	hs := distHashes(t, a)
	for _, as := range mu.Assets {
		if as.Format == "binary" || as.Format == "sbom" {
			if hs[as.File] != hu[as.File] {
				t.Errorf("%s differs signed vs unsigned", as.File)
			}
		}
	}
	for _, as := range assetsOf(ma, "deb") {
		signed := arWithout(t, filepath.Join(a, as.File), "_gpgorigin")
		unsigned, _ := os.ReadFile(filepath.Join(u1, as.File))
		if !bytes.Equal(signed, unsigned) {
			t.Errorf("%s: signed deb minus _gpgorigin is not the unsigned deb", as.File)
		}
	}
	for _, as := range assetsOf(ma, "rpm") {
		if !bytes.Equal(rpmAfterSignature(t, filepath.Join(a, as.File)), rpmAfterSignature(t, filepath.Join(u1, as.File))) {
			t.Errorf("%s: header and payload differ signed vs unsigned", as.File)
		}
	}
	for _, as := range assetsOf(ma, "apk") {
		s, u := gzipStreams(t, filepath.Join(a, as.File)), gzipStreams(t, filepath.Join(u1, as.File))
		if len(s) != 3 || len(u) != 2 || !bytes.Equal(s[1], u[0]) || !bytes.Equal(s[2], u[1]) {
			t.Errorf("%s: control and data differ signed vs unsigned", as.File)
		}
	}
	var disk Manifest
	mb, _ := os.ReadFile(filepath.Join(a, ManifestFile))
	if err := json.Unmarshal(mb, &disk); err != nil || disk.Signing.OpenPGPFingerprint == "" {
		t.Errorf("manifest.json signing: %+v %v", disk.Signing, err)
	}
}
