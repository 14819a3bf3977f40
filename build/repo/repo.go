// Package repo lays out signed package repositories from the built packages:
// an apt repository (deb/), a dnf/yum repository (rpm/) and an Alpine
// repository (alpine/<arch>/), with the public keys at the top. A repository
// grows: the packages already in it are kept and the metadata is written
// again over all of them, so the same directory serves every version and
// `apt upgrade` / `dnf upgrade` / `apk upgrade` find the newest. Metadata
// dates are SOURCE_DATE_EPOCH and the indexes are sorted, so one set of
// packages always gives the same bytes.
package repo

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/kvmmanager/guest-agent/build/signing"
)

// Sub-directories of a repository, one per package format.
const (
	AptDir    = "deb"
	RPMDir    = "rpm"
	AlpineDir = "alpine"
	// Suite and Component of the apt repository (deb URL stable main).
	Suite     = "stable"
	Component = "main"
)

// Options configure Build.
type Options struct {
	Dir      string        // the repository, e.g. dist/repo
	Packages []string      // .deb, .rpm and .apk files to add
	Keys     *signing.Keys // sign the metadata when loaded; nil: unsigned
	Time     time.Time     // SOURCE_DATE_EPOCH: Release Date, repomd timestamps
	Origin   string        // apt Origin and Label; default "kvmmanager-agent"
}

// Result lists what Build wrote.
type Result struct {
	Debs, RPMs, APKs int      // packages in the repository after the build
	Files            []string // metadata and key files written
}

// Build adds the packages to the repository and writes its metadata.
func Build(opts Options) (Result, error) {
	if opts.Dir == "" {
		return Result{}, fmt.Errorf("repo: Options.Dir is empty")
	}
	if opts.Origin == "" {
		opts.Origin = "kvmmanager-agent"
	}
	var debs, rpms, apks []string
	for _, p := range opts.Packages {
		switch filepath.Ext(p) {
		case ".deb":
			debs = append(debs, p)
		case ".rpm":
			rpms = append(rpms, p)
		case ".apk":
			apks = append(apks, p)
		default:
			return Result{}, fmt.Errorf("repo: %s is not a .deb, .rpm or .apk", p)
		}
	}
	var res Result
	var err error
	if res.Debs, err = buildApt(opts, debs, &res.Files); err != nil {
		return Result{}, err
	}
	if res.RPMs, err = buildRPM(opts, rpms, &res.Files); err != nil {
		return Result{}, err
	}
	if res.APKs, err = buildAlpine(opts, apks, &res.Files); err != nil {
		return Result{}, err
	}
	if err := writeKeys(opts, &res.Files); err != nil {
		return Result{}, err
	}
	return res, nil
}

// Public key file names at the top of the repository.
const PublicKeyFile = "kvmmanager-agent-signing-key.asc"

func writeKeys(opts Options, files *[]string) error {
	if opts.Keys.HasPGP() {
		p := filepath.Join(opts.Dir, PublicKeyFile)
		f, err := create(p)
		if err != nil {
			return err
		}
		if err := opts.Keys.PublicKeyArmored(f); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
		*files = append(*files, p)
	}
	if opts.Keys.HasAPK() {
		pem, err := opts.Keys.APKPublicKeyPEM()
		if err != nil {
			return err
		}
		p := filepath.Join(opts.Dir, opts.Keys.APKKeyName())
		if err := writeFile(p, pem); err != nil {
			return err
		}
		*files = append(*files, p)
	}
	return nil
}

func create(p string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", filepath.Dir(p), err)
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", p, err)
	}
	return f, nil
}

// writeFile replaces p with data through a temporary file, so a reader of
// the repository never sees half a file.
func writeFile(p string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(p), err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+".*")
	if err != nil {
		return fmt.Errorf("create temporary file for %s: %w", p, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("chmod %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp.Name(), p, err)
	}
	return nil
}

// copyFile copies src to dst (replacing it) through a temporary file.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("open %s: %w", src, err)
	}
	defer in.Close()
	data, err := io.ReadAll(in)
	if err != nil {
		return fmt.Errorf("read %s: %w", src, err)
	}
	return writeFile(dst, data)
}

// listFiles returns the files of dir with extension ext (none if dir does not exist).
func listFiles(dir, ext string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	var out []string
	for _, e := range entries {
		if e.Type().IsRegular() && filepath.Ext(e.Name()) == ext {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out, nil
}
