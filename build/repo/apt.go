package repo

import (
	"bytes"
	"compress/gzip"
	"crypto/md5" //nolint:gosec // apt's Release lists MD5Sum beside SHA256 by convention
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"pault.ag/go/debian/control"
	"pault.ag/go/debian/deb"
	"pault.ag/go/debian/version"
)

// AptArchitectures are the architectures the apt repository always lists.
var AptArchitectures = []string{"amd64", "arm64"}

type debEntry struct {
	name, arch string
	ver        version.Version
	para       control.Paragraph
}

// readDeb reads a .deb's control paragraph.
func readDeb(p string) (debEntry, error) {
	d, closer, err := deb.LoadFile(p)
	if err != nil {
		return debEntry{}, fmt.Errorf("read deb %s: %w", p, err)
	}
	defer closer()
	c := d.Control
	para := control.Paragraph{Values: map[string]string{}}
	for _, k := range c.Paragraph.Order {
		para.Set(k, c.Paragraph.Values[k])
	}
	return debEntry{name: c.Package, arch: c.Architecture.String(), ver: c.Version, para: para}, nil
}

// poolPath is where a package lives: pool/main/<first letter>/<name>/<file>.
func poolPath(name, file string) string {
	return filepath.Join("pool", Component, name[:1], name, file)
}

func buildApt(opts Options, debs []string, files *[]string) (int, error) {
	root := filepath.Join(opts.Dir, AptDir)
	for _, p := range debs {
		e, err := readDeb(p)
		if err != nil {
			return 0, err
		}
		if err := copyFile(p, filepath.Join(root, poolPath(e.name, filepath.Base(p)))); err != nil {
			return 0, err
		}
	}
	var pool []string
	err := filepath.WalkDir(filepath.Join(root, "pool"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return fs.SkipDir
			}
			return err
		}
		if d.Type().IsRegular() && strings.HasSuffix(p, ".deb") {
			pool = append(pool, p)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("list apt pool under %s: %w", root, err)
	}
	if len(pool) == 0 {
		return 0, nil
	}
	var entries []debEntry
	for _, p := range pool {
		e, err := readDeb(p)
		if err != nil {
			return 0, err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return 0, fmt.Errorf("read %s: %w", p, err)
		}
		rel, _ := filepath.Rel(root, p)
		md := md5.Sum(data) //nolint:gosec
		sum := sha256.Sum256(data)
		e.para.Set("Filename", filepath.ToSlash(rel))
		e.para.Set("Size", fmt.Sprint(len(data)))
		e.para.Set("MD5sum", hex.EncodeToString(md[:]))
		e.para.Set("SHA256", hex.EncodeToString(sum[:]))
		entries = append(entries, e)
	}
	sort.Slice(entries, func(i, j int) bool {
		a, b := entries[i], entries[j]
		if a.name != b.name {
			return a.name < b.name
		}
		if c := version.Compare(a.ver, b.ver); c != 0 {
			return c < 0
		}
		return a.arch < b.arch
	})
	dist := filepath.Join(root, "dists", Suite)
	var indexes []string // relative to dist
	for _, arch := range AptArchitectures {
		var buf bytes.Buffer
		for _, e := range entries {
			if e.arch != arch && e.arch != "all" {
				continue
			}
			if err := e.para.WriteTo(&buf); err != nil {
				return 0, fmt.Errorf("write apt Packages entry of %s: %w", e.name, err)
			}
			buf.WriteString("\n")
		}
		dir := filepath.Join(Component, "binary-"+arch)
		gz, err := gzipBytes(buf.Bytes())
		if err != nil {
			return 0, err
		}
		for name, data := range map[string][]byte{"Packages": buf.Bytes(), "Packages.gz": gz} {
			if err := writeFile(filepath.Join(dist, dir, name), data); err != nil {
				return 0, err
			}
			indexes = append(indexes, filepath.ToSlash(filepath.Join(dir, name)))
		}
	}
	sort.Strings(indexes)
	release, err := aptRelease(opts, dist, indexes)
	if err != nil {
		return 0, err
	}
	if err := writeFile(filepath.Join(dist, "Release"), release); err != nil {
		return 0, err
	}
	*files = append(*files, filepath.Join(dist, "Release"))
	for _, name := range []string{"InRelease", "Release.gpg"} {
		p := filepath.Join(dist, name)
		if !opts.Keys.HasPGP() {
			if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
				return 0, fmt.Errorf("remove stale %s: %w", p, err)
			}
			continue
		}
		var sig bytes.Buffer
		if name == "InRelease" {
			err = opts.Keys.ClearSign(&sig, bytes.NewReader(release))
		} else {
			err = opts.Keys.DetachArmored(&sig, bytes.NewReader(release))
		}
		if err != nil {
			return 0, fmt.Errorf("sign %s: %w", p, err)
		}
		if err := writeFile(p, sig.Bytes()); err != nil {
			return 0, err
		}
		*files = append(*files, p)
	}
	return len(entries), nil
}

// aptRelease is the Release file over the indexes (paths relative to dist).
func aptRelease(opts Options, dist string, indexes []string) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Origin: %s\nLabel: %s\nSuite: %s\nCodename: %s\n", opts.Origin, opts.Origin, Suite, Suite)
	fmt.Fprintf(&b, "Date: %s\n", opts.Time.UTC().Format(time.RFC1123))
	fmt.Fprintf(&b, "Architectures: %s\nComponents: %s\n", strings.Join(AptArchitectures, " "), Component)
	fmt.Fprintf(&b, "Description: %s packages\n", opts.Origin)
	type sums struct {
		md5, sha256 string
		size        int
	}
	all := map[string]sums{}
	for _, rel := range indexes {
		data, err := os.ReadFile(filepath.Join(dist, filepath.FromSlash(rel)))
		if err != nil {
			return nil, fmt.Errorf("read apt index: %w", err)
		}
		m := md5.Sum(data) //nolint:gosec
		s := sha256.Sum256(data)
		all[rel] = sums{hex.EncodeToString(m[:]), hex.EncodeToString(s[:]), len(data)}
	}
	b.WriteString("MD5Sum:\n")
	for _, rel := range indexes {
		fmt.Fprintf(&b, " %s %d %s\n", all[rel].md5, all[rel].size, rel)
	}
	b.WriteString("SHA256:\n")
	for _, rel := range indexes {
		fmt.Fprintf(&b, " %s %d %s\n", all[rel].sha256, all[rel].size, rel)
	}
	return b.Bytes(), nil
}

// gzipBytes compresses data without a name or date in the header.
func gzipBytes(data []byte) ([]byte, error) {
	var b bytes.Buffer
	z, err := gzip.NewWriterLevel(&b, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := z.Write(data); err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	if err := z.Close(); err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	return b.Bytes(), nil
}
