package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/kvmmanager/guest-agent/build/binaries"
	"github.com/kvmmanager/guest-agent/build/iso"
	"github.com/kvmmanager/guest-agent/build/sbom"
	"github.com/kvmmanager/guest-agent/build/signing"
)

// Asset is one published release file, listed in dist/manifest.json.
type Asset struct {
	File    string `json:"file"`   // asset name, a file at the top of dist/
	Path    string `json:"path"`   // where the build wrote it, relative to dist/
	Size    int64  `json:"size"`   // bytes
	SHA256  string `json:"sha256"` // hex
	Arch    string `json:"arch"`   // amd64, arm64, or "all" for the ISO
	Format  string `json:"format"` // binary, deb, rpm, apk, iso, sbom, key, signature
	Version string `json:"version"`
	// Signed is true for a package that carries its signature inside.
	Signed bool `json:"signed,omitempty"`
	// Describes is the asset an SBOM describes or a signature signs.
	Describes string `json:"describes,omitempty"`
}

// Signing tells which keys signed a release (empty when unsigned).
type Signing struct {
	OpenPGPFingerprint string `json:"openpgp_fingerprint,omitempty"`
	APKKeyName         string `json:"apk_key_name,omitempty"`
	SignatureTime      int64  `json:"signature_time,omitempty"` // = SOURCE_DATE_EPOCH
}

// Release file names besides the per-binary and per-package assets.
const (
	SumsFile      = "SHA256SUMS"
	SumsSignature = "SHA256SUMS.asc"
	ManifestFile  = "manifest.json"
	// PublicKeyFile is the OpenPGP public key (armored) that verifies
	// SHA256SUMS.asc, the .deb and .rpm and the repositories.
	PublicKeyFile = "kvmmanager-agent-signing-key.asc"
)

// Manifest is dist/manifest.json.
type Manifest struct {
	Version         string  `json:"version"`
	Commit          string  `json:"commit"`
	SourceDateEpoch int64   `json:"source_date_epoch"`
	Signing         Signing `json:"signing"`
	Assets          []Asset `json:"assets"`
}

// Release builds everything, then lays the release out flat at the top of
// dist/ (binaries as <name>-linux-<arch>, packages under their nfpm names,
// the ISO, a CycloneDX SBOM per binary as <binary>.cdx.json, the public
// keys when signing; hard links where possible) with dist/SHA256SUMS
// (sha256sum -c format) over those files, dist/SHA256SUMS.asc (detached
// OpenPGP signature) when an OpenPGP key is given, and dist/manifest.json
// listing all of them.
func Release(ctx context.Context, opts Options) (Manifest, error) {
	r, err := start(opts)
	if err != nil {
		return Manifest{}, err
	}
	defer r.close()
	isoPath, _, err := r.iso(ctx)
	if err != nil {
		return Manifest{}, err
	}
	bins, _, err := r.binaries(ctx)
	if err != nil {
		return Manifest{}, err
	}
	pkgs, _, _, err := r.packages(ctx)
	if err != nil {
		return Manifest{}, err
	}
	r.sayKeys()
	t0 := time.Now()
	dist := r.opts.Dist
	var assets []Asset
	sbomDir := filepath.Join(dist, "sbom")
	if err := os.MkdirAll(sbomDir, 0o755); err != nil {
		return Manifest{}, fmt.Errorf("create %s: %w", sbomDir, err)
	}
	for _, b := range bins {
		name := b.Command.Name + "-" + b.OS + "-" + b.Arch
		if b.OS == "windows" {
			name += ".exe"
		}
		assets = append(assets, Asset{File: name, Path: b.Path, Arch: b.Arch, Format: "binary"})
		doc := filepath.Join(sbomDir, name+sbom.Extension)
		if err := sbom.WriteFile(doc, sbom.Input{Path: b.Path, Name: b.Command.Name, Version: r.info.Version, Time: r.info.Time()}); err != nil {
			return Manifest{}, err
		}
		assets = append(assets, Asset{File: filepath.Base(doc), Path: doc, Arch: b.Arch, Format: "sbom", Describes: name})
	}
	for _, p := range pkgs {
		signed := r.keys.HasPGP()
		if p.Format == "apk" {
			signed = r.keys.HasAPK()
		}
		assets = append(assets, Asset{File: filepath.Base(p.Path), Path: p.Path, Arch: p.Arch, Format: p.Format, Signed: signed})
	}
	assets = append(assets, Asset{File: iso.FileName, Path: isoPath, Arch: "all", Format: "iso"})
	keyFiles, err := writePublicKeys(filepath.Join(dist, "keys"), r.keys)
	if err != nil {
		return Manifest{}, err
	}
	for _, k := range keyFiles {
		assets = append(assets, Asset{File: filepath.Base(k), Path: k, Arch: "all", Format: "key"})
	}

	if err := removeStaleAssets(dist); err != nil {
		return Manifest{}, err
	}
	var sums strings.Builder
	for i := range assets {
		a := &assets[i]
		a.Version = r.info.Version
		flat := filepath.Join(dist, a.File)
		if flat != a.Path {
			if err := linkOrCopy(a.Path, flat); err != nil {
				return Manifest{}, err
			}
		}
		size, sum, err := sha256File(flat)
		if err != nil {
			return Manifest{}, err
		}
		a.Size, a.SHA256 = size, sum
		rel, err := filepath.Rel(dist, a.Path)
		if err != nil {
			return Manifest{}, fmt.Errorf("path of %s in %s: %w", a.Path, dist, err)
		}
		a.Path = filepath.ToSlash(rel)
	}
	sort.Slice(assets, func(i, j int) bool { return assets[i].File < assets[j].File })
	for _, a := range assets {
		fmt.Fprintf(&sums, "%s  %s\n", a.SHA256, a.File)
	}
	m := Manifest{Version: r.info.Version, Commit: r.info.Commit, SourceDateEpoch: r.info.SourceDateEpoch, Assets: assets}
	if err := r.writeFile(filepath.Join(dist, SumsFile), []byte(sums.String()), t0); err != nil {
		return Manifest{}, err
	}
	if r.keys.HasPGP() || r.keys.HasAPK() {
		m.Signing = Signing{OpenPGPFingerprint: r.keys.Fingerprint(), APKKeyName: r.keys.APKKeyName(), SignatureTime: r.info.SourceDateEpoch}
	}
	if r.keys.HasPGP() {
		var sig strings.Builder
		if err := r.keys.DetachArmored(&sig, strings.NewReader(sums.String())); err != nil {
			return Manifest{}, fmt.Errorf("sign %s: %w", SumsFile, err)
		}
		p := filepath.Join(dist, SumsSignature)
		if err := r.writeFile(p, []byte(sig.String()), t0); err != nil {
			return Manifest{}, err
		}
		_, sum, err := sha256File(p)
		if err != nil {
			return Manifest{}, err
		}
		m.Assets = append(m.Assets, Asset{File: SumsSignature, Path: SumsSignature, Size: int64(sig.Len()), SHA256: sum,
			Arch: "all", Format: "signature", Version: r.info.Version, Describes: SumsFile})
	}
	mj, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return Manifest{}, fmt.Errorf("encode manifest: %w", err)
	}
	if err := r.writeFile(filepath.Join(dist, ManifestFile), append(mj, '\n'), t0); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

func (r *run) writeFile(p string, data []byte, t0 time.Time) error {
	if err := os.WriteFile(p, data, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	r.line(p, time.Since(t0), false)
	return nil
}

// writePublicKeys writes the public halves of the loaded keys into dir (emptied
// first) and returns their paths.
func writePublicKeys(dir string, keys *signing.Keys) ([]string, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("remove %s: %w", dir, err)
	}
	if !keys.HasPGP() && !keys.HasAPK() {
		return nil, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	var out []string
	if keys.HasPGP() {
		var b strings.Builder
		if err := keys.PublicKeyArmored(&b); err != nil {
			return nil, err
		}
		p := filepath.Join(dir, PublicKeyFile)
		if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
			return nil, fmt.Errorf("write %s: %w", p, err)
		}
		out = append(out, p)
	}
	if keys.HasAPK() {
		pem, err := keys.APKPublicKeyPEM()
		if err != nil {
			return nil, err
		}
		p := filepath.Join(dir, keys.APKKeyName())
		if err := os.WriteFile(p, pem, 0o644); err != nil {
			return nil, fmt.Errorf("write %s: %w", p, err)
		}
		out = append(out, p)
	}
	return out, nil
}

func linkOrCopy(src, dst string) error {
	if err := os.Remove(dst); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("replace %s: %w", dst, err)
	}
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("open %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return fmt.Errorf("create %s: %w", dst, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("close %s: %w", dst, err)
	}
	return nil
}

func sha256File(p string) (int64, string, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, "", fmt.Errorf("open %s: %w", p, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return 0, "", fmt.Errorf("read %s: %w", p, err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// removeStaleAssets deletes the flat assets of an earlier release from the
// top of dist/ (package names carry the version).
func removeStaleAssets(dist string) error {
	entries, err := os.ReadDir(dist)
	if err != nil {
		return fmt.Errorf("list %s: %w", dist, err)
	}
	for _, e := range entries {
		n := e.Name()
		stale := false
		switch filepath.Ext(n) {
		case ".deb", ".rpm", ".apk", ".asc", ".pub":
			stale = true
		}
		if strings.HasSuffix(n, sbom.Extension) {
			stale = true
		}
		for _, c := range binaries.Commands {
			if strings.HasPrefix(n, c.Name+"-linux-") {
				stale = true
			}
		}
		if stale && e.Type().IsRegular() {
			if err := os.Remove(filepath.Join(dist, n)); err != nil {
				return fmt.Errorf("remove stale asset: %w", err)
			}
		}
	}
	return nil
}
