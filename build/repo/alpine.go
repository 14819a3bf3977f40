package repo

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha1" //nolint:gosec // apk's package checksum (C:Q1...) and signatures are SHA-1
	"encoding/base64"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// AlpineArchitectures are the directories of the Alpine repository.
var AlpineArchitectures = []string{"aarch64", "x86_64"}

type apkInfo struct {
	file   string
	fields map[string][]string // .PKGINFO, key -> values in order
	cksum  string              // Q1 + base64(SHA-1 of the control gzip stream)
	size   int64
}

func (a apkInfo) get(k string) string {
	if v := a.fields[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// gzipMembers splits concatenated gzip streams (an .apk is signature,
// control and data streams, or control and data when unsigned).
func gzipMembers(data []byte) ([][]byte, error) {
	var out [][]byte
	r := bytes.NewReader(data)
	for r.Len() > 0 {
		start := len(data) - r.Len()
		z, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("gzip stream at byte %d: %w", start, err)
		}
		z.Multistream(false)
		if _, err := io.Copy(io.Discard, z); err != nil {
			return nil, fmt.Errorf("gzip stream at byte %d: %w", start, err)
		}
		out = append(out, data[start:len(data)-r.Len()])
	}
	return out, nil
}

func readAPK(p string) (apkInfo, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return apkInfo{}, fmt.Errorf("read apk %s: %w", p, err)
	}
	streams, err := gzipMembers(data)
	if err != nil {
		return apkInfo{}, fmt.Errorf("read apk %s: %w", p, err)
	}
	for _, s := range streams {
		z, err := gzip.NewReader(bytes.NewReader(s))
		if err != nil {
			return apkInfo{}, fmt.Errorf("read apk %s: %w", p, err)
		}
		tr := tar.NewReader(z)
		for {
			h, err := tr.Next()
			if err != nil {
				break // end of this stream's (cut) tar
			}
			if h.Name != ".PKGINFO" {
				continue
			}
			info := apkInfo{file: p, fields: map[string][]string{}, size: int64(len(data))}
			sc := bufio.NewScanner(tr)
			for sc.Scan() {
				line := sc.Text()
				if strings.HasPrefix(line, "#") || !strings.Contains(line, " = ") {
					continue
				}
				k, v, _ := strings.Cut(line, " = ")
				info.fields[k] = append(info.fields[k], v)
			}
			sum := sha1.Sum(s) //nolint:gosec
			info.cksum = "Q1" + base64.StdEncoding.EncodeToString(sum[:])
			if info.get("pkgname") == "" || info.get("pkgver") == "" || info.get("arch") == "" {
				return apkInfo{}, fmt.Errorf("apk %s: .PKGINFO lacks pkgname, pkgver or arch", p)
			}
			return info, nil
		}
	}
	return apkInfo{}, fmt.Errorf("apk %s: no .PKGINFO", p)
}

// indexEntry is the package's APKINDEX paragraph.
func (a apkInfo) indexEntry() string {
	var b strings.Builder
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%s:%s\n", k, v)
		}
	}
	line("C", a.cksum)
	line("P", a.get("pkgname"))
	line("V", a.get("pkgver"))
	line("A", a.get("arch"))
	line("S", fmt.Sprint(a.size))
	line("I", a.get("size"))
	line("T", a.get("pkgdesc"))
	line("U", a.get("url"))
	line("L", a.get("license"))
	line("o", a.get("origin"))
	line("m", a.get("maintainer"))
	line("t", a.get("builddate"))
	line("c", a.get("commit"))
	line("D", strings.Join(a.fields["depend"], " "))
	line("p", strings.Join(a.fields["provides"], " "))
	line("i", strings.Join(a.fields["install_if"], " "))
	b.WriteString("\n")
	return b.String()
}

func buildAlpine(opts Options, apks []string, files *[]string) (int, error) {
	root := filepath.Join(opts.Dir, AlpineDir)
	for _, p := range apks {
		a, err := readAPK(p)
		if err != nil {
			return 0, err
		}
		// apk fetches <repository>/<arch>/<name>-<version>.apk.
		dst := filepath.Join(root, a.get("arch"), a.get("pkgname")+"-"+a.get("pkgver")+".apk")
		if err := copyFile(p, dst); err != nil {
			return 0, err
		}
	}
	total := 0
	for _, arch := range AlpineArchitectures {
		dir := filepath.Join(root, arch)
		all, err := listFiles(dir, ".apk")
		if err != nil {
			return 0, err
		}
		if len(all) == 0 {
			continue
		}
		var infos []apkInfo
		for _, p := range all {
			a, err := readAPK(p)
			if err != nil {
				return 0, err
			}
			infos = append(infos, a)
		}
		sort.Slice(infos, func(i, j int) bool {
			if infos[i].get("pkgname") != infos[j].get("pkgname") {
				return infos[i].get("pkgname") < infos[j].get("pkgname")
			}
			return infos[i].file < infos[j].file
		})
		var index strings.Builder
		for _, a := range infos {
			index.WriteString(a.indexEntry())
		}
		idx, err := apkIndexTarGz(opts, index.String())
		if err != nil {
			return 0, err
		}
		p := filepath.Join(dir, "APKINDEX.tar.gz")
		if err := writeFile(p, idx); err != nil {
			return 0, err
		}
		*files = append(*files, p)
		total += len(infos)
	}
	return total, nil
}

// apkIndexTarGz is APKINDEX.tar.gz: the index gzip stream (DESCRIPTION and
// APKINDEX), preceded when a key is loaded by the signature stream
// (.SIGN.RSA.<key name>, RSA over the SHA-1 of the index stream), as
// abuild-sign writes it.
func apkIndexTarGz(opts Options, index string) ([]byte, error) {
	mtime := opts.Time.UTC()
	body, err := tarGz(false, mtime,
		tarMember{"DESCRIPTION", []byte(opts.Origin + " packages")},
		tarMember{"APKINDEX", []byte(index)})
	if err != nil {
		return nil, err
	}
	if !opts.Keys.HasAPK() {
		return body, nil
	}
	digest := sha1.Sum(body) //nolint:gosec
	sig, err := opts.Keys.APKSignDigest(digest[:])
	if err != nil {
		return nil, err
	}
	// The signature tar is cut (no end-of-archive blocks) so that apk reads
	// the concatenation as one tar stream.
	head, err := tarGz(true, mtime, tarMember{".SIGN.RSA." + opts.Keys.APKKeyName(), sig})
	if err != nil {
		return nil, err
	}
	return append(head, body...), nil
}

type tarMember struct {
	name string
	data []byte
}

func tarGz(cut bool, mtime time.Time, members ...tarMember) ([]byte, error) {
	var buf bytes.Buffer
	z, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(z)
	for _, m := range members {
		h := &tar.Header{Name: m.name, Mode: 0o644, Size: int64(len(m.data)), ModTime: mtime, Format: tar.FormatUSTAR, Uname: "root", Gname: "root"}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("tar %s: %w", m.name, err)
		}
		if _, err := tw.Write(m.data); err != nil {
			return nil, fmt.Errorf("tar %s: %w", m.name, err)
		}
	}
	if cut {
		err = tw.Flush()
	} else {
		err = tw.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("tar: %w", err)
	}
	if err := z.Close(); err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	return buf.Bytes(), nil
}
