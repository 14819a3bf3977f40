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
)

// Asset is one published release file, listed in dist/manifest.json.
type Asset struct {
	File    string `json:"file"`   // asset name, a file at the top of dist/
	Path    string `json:"path"`   // where the build wrote it, relative to dist/
	Size    int64  `json:"size"`   // bytes
	SHA256  string `json:"sha256"` // hex
	Arch    string `json:"arch"`   // amd64, arm64, or "all" for the ISO
	Format  string `json:"format"` // binary, deb, rpm, apk, iso
	Version string `json:"version"`
}

// Manifest is dist/manifest.json.
type Manifest struct {
	Version         string  `json:"version"`
	Commit          string  `json:"commit"`
	SourceDateEpoch int64   `json:"source_date_epoch"`
	Assets          []Asset `json:"assets"`
}

// Release builds everything, then lays the release out flat at the top of
// dist/ (binaries as <name>-linux-<arch>, packages under their nfpm names,
// the ISO; hard links where possible) with dist/SHA256SUMS (sha256sum -c
// format) and dist/manifest.json over those files.
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
	t0 := time.Now()
	dist := r.opts.Dist
	var assets []Asset
	for _, b := range bins {
		file := b.Command.Name + "-" + b.OS + "-" + b.Arch
		if b.OS == "windows" {
			file += ".exe"
		}
		assets = append(assets, Asset{File: file, Path: b.Path, Arch: b.Arch, Format: "binary"})
	}
	for _, p := range pkgs {
		assets = append(assets, Asset{File: filepath.Base(p.Path), Path: p.Path, Arch: p.Arch, Format: p.Format})
	}
	assets = append(assets, Asset{File: iso.FileName, Path: isoPath, Arch: "all", Format: "iso"})

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
	mj, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return Manifest{}, fmt.Errorf("encode manifest: %w", err)
	}
	for name, data := range map[string][]byte{"SHA256SUMS": []byte(sums.String()), "manifest.json": append(mj, '\n')} {
		p := filepath.Join(dist, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return Manifest{}, fmt.Errorf("write %s: %w", p, err)
		}
		r.line(p, time.Since(t0), false)
	}
	return m, nil
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
		case ".deb", ".rpm", ".apk":
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
