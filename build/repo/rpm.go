package repo

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	rpmutils "github.com/sassoftware/go-rpmutils"
)

// rpmPackage is what the repodata says about one .rpm.
type rpmPackage struct {
	file, sum                           string
	name, arch, epoch, version, release string
	summary, description, packager      string
	url, license, vendor, group         string
	buildhost, sourcerpm                string
	buildTime                           int
	size, installed, archive            int64
	hdrStart, hdrEnd                    int
	provides, requires                  []rpmEntry
	conflicts, obsoletes                []rpmEntry
	files                               []rpmFile
}

type rpmEntry struct {
	Name  string `xml:"name,attr"`
	Flags string `xml:"flags,attr,omitempty"`
	Epoch string `xml:"epoch,attr,omitempty"`
	Ver   string `xml:"ver,attr,omitempty"`
	Rel   string `xml:"rel,attr,omitempty"`
	Pre   string `xml:"pre,attr,omitempty"`
}

type rpmFile struct {
	Type string `xml:"type,attr,omitempty"` // dir, ghost, or "" for a file
	Path string `xml:",chardata"`
}

func readRPM(p string) (rpmPackage, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return rpmPackage{}, fmt.Errorf("read rpm %s: %w", p, err)
	}
	h, err := rpmutils.ReadHeader(bytes.NewReader(data))
	if err != nil {
		return rpmPackage{}, fmt.Errorf("read rpm header of %s: %w", p, err)
	}
	sum := sha256.Sum256(data)
	str := func(tag int) string { s, _ := h.GetString(tag); return s }
	r := rpmPackage{
		file: filepath.Base(p), sum: hex.EncodeToString(sum[:]),
		name: str(rpmutils.NAME), arch: str(rpmutils.ARCH), version: str(rpmutils.VERSION), release: str(rpmutils.RELEASE),
		summary: str(rpmutils.SUMMARY), description: str(rpmutils.DESCRIPTION), packager: str(rpmutils.PACKAGER),
		url: str(rpmutils.URL), license: str(rpmutils.LICENSE), vendor: str(rpmutils.VENDOR), group: str(rpmutils.GROUP),
		buildhost: str(rpmutils.BUILDHOST), sourcerpm: str(rpmutils.SOURCERPM),
		size: int64(len(data)),
	}
	r.epoch = "0"
	if e, err := h.GetInts(rpmutils.EPOCH); err == nil && len(e) > 0 {
		r.epoch = fmt.Sprint(e[0])
	}
	if t, err := h.GetInts(rpmutils.BUILDTIME); err == nil && len(t) > 0 {
		r.buildTime = t[0]
	}
	if n, err := h.InstalledSize(); err == nil {
		r.installed = n
	}
	if n, err := h.PayloadSize(); err == nil {
		r.archive = n
	}
	rng := h.GetRange()
	r.hdrStart, r.hdrEnd = rng.Start, rng.End
	if r.provides, err = deps(h, rpmutils.PROVIDENAME, rpmutils.PROVIDEFLAGS, rpmutils.PROVIDEVERSION); err != nil {
		return rpmPackage{}, fmt.Errorf("%s: provides: %w", p, err)
	}
	if r.requires, err = deps(h, rpmutils.REQUIRENAME, rpmutils.REQUIREFLAGS, rpmutils.REQUIREVERSION); err != nil {
		return rpmPackage{}, fmt.Errorf("%s: requires: %w", p, err)
	}
	if r.conflicts, err = deps(h, rpmutils.CONFLICTNAME, rpmutils.CONFLICTFLAGS, rpmutils.CONFLICTVERSION); err != nil {
		return rpmPackage{}, fmt.Errorf("%s: conflicts: %w", p, err)
	}
	if r.obsoletes, err = deps(h, rpmutils.OBSOLETENAME, rpmutils.OBSOLETEFLAGS, rpmutils.OBSOLETEVERSION); err != nil {
		return rpmPackage{}, fmt.Errorf("%s: obsoletes: %w", p, err)
	}
	fis, err := h.GetFiles()
	if err != nil {
		return rpmPackage{}, fmt.Errorf("%s: files: %w", p, err)
	}
	for _, fi := range fis {
		f := rpmFile{Path: fi.Name()}
		switch {
		case fi.Flags()&rpmFileGhost != 0:
			f.Type = "ghost"
		case fi.Mode()&0o170000 == 0o040000:
			f.Type = "dir"
		}
		r.files = append(r.files, f)
	}
	sort.Slice(r.files, func(i, j int) bool { return r.files[i].Path < r.files[j].Path })
	return r, nil
}

// RPM header flag bits (rpmlib's rpmds.h and rpmfiles.h).
const (
	rpmFileGhost       = 1 << 6
	rpmSenseLess       = 1 << 1
	rpmSenseGreater    = 1 << 2
	rpmSenseEqual      = 1 << 3
	rpmSensePrereq     = 1 << 6
	rpmSenseScriptPre  = 1 << 9
	rpmSenseScriptPost = 1 << 10
	rpmSenseRPMLib     = 1 << 24
)

// deps reads one dependency list; rpmlib() requirements are left out as
// createrepo does.
func deps(h *rpmutils.RpmHeader, nameTag, flagTag, verTag int) ([]rpmEntry, error) {
	if !h.HasTag(nameTag) {
		return nil, nil
	}
	names, err := h.GetStrings(nameTag)
	if err != nil {
		return nil, err
	}
	flags, _ := h.GetInts(flagTag)
	vers, _ := h.GetStrings(verTag)
	var out []rpmEntry
	seen := map[rpmEntry]bool{}
	for i, n := range names {
		var fl int
		if i < len(flags) {
			fl = flags[i]
		}
		if fl&rpmSenseRPMLib != 0 || strings.HasPrefix(n, "rpmlib(") {
			continue
		}
		e := rpmEntry{Name: n}
		switch fl & (rpmSenseLess | rpmSenseGreater | rpmSenseEqual) {
		case rpmSenseEqual:
			e.Flags = "EQ"
		case rpmSenseLess:
			e.Flags = "LT"
		case rpmSenseGreater:
			e.Flags = "GT"
		case rpmSenseLess | rpmSenseEqual:
			e.Flags = "LE"
		case rpmSenseGreater | rpmSenseEqual:
			e.Flags = "GE"
		}
		if e.Flags != "" && i < len(vers) && vers[i] != "" {
			e.Epoch, e.Ver, e.Rel = splitEVR(vers[i])
		}
		if fl&(rpmSensePrereq|rpmSenseScriptPre|rpmSenseScriptPost) != 0 {
			e.Pre = "1"
		}
		if !seen[e] {
			seen[e] = true
			out = append(out, e)
		}
	}
	return out, nil
}

func splitEVR(evr string) (epoch, ver, rel string) {
	epoch = "0"
	if e, rest, ok := strings.Cut(evr, ":"); ok {
		epoch, evr = e, rest
	}
	ver, rel, _ = strings.Cut(evr, "-")
	return epoch, ver, rel
}

// primaryFile reports whether createrepo lists a file in primary.xml (the
// rest are only in filelists.xml): /etc, bin directories, /usr/lib/sendmail.
func primaryFile(p string) bool {
	return strings.HasPrefix(p, "/etc/") || strings.Contains(p, "bin/") || p == "/usr/lib/sendmail"
}

// XML of repodata (createrepo's format).
type (
	xmlVersion struct {
		Epoch string `xml:"epoch,attr"`
		Ver   string `xml:"ver,attr"`
		Rel   string `xml:"rel,attr"`
	}
	xmlChecksum struct {
		Type  string `xml:"type,attr"`
		PkgID string `xml:"pkgid,attr,omitempty"`
		Value string `xml:",chardata"`
	}
	xmlDeps struct {
		Entries []rpmEntry `xml:"rpm:entry"`
	}
	xmlPrimaryPackage struct {
		Type        string      `xml:"type,attr"`
		Name        string      `xml:"name"`
		Arch        string      `xml:"arch"`
		Version     xmlVersion  `xml:"version"`
		Checksum    xmlChecksum `xml:"checksum"`
		Summary     string      `xml:"summary"`
		Description string      `xml:"description"`
		Packager    string      `xml:"packager"`
		URL         string      `xml:"url"`
		Time        struct {
			File  int64 `xml:"file,attr"`
			Build int   `xml:"build,attr"`
		} `xml:"time"`
		Size struct {
			Package   int64 `xml:"package,attr"`
			Installed int64 `xml:"installed,attr"`
			Archive   int64 `xml:"archive,attr"`
		} `xml:"size"`
		Location struct {
			Href string `xml:"href,attr"`
		} `xml:"location"`
		Format struct {
			License     string `xml:"rpm:license"`
			Vendor      string `xml:"rpm:vendor"`
			Group       string `xml:"rpm:group"`
			Buildhost   string `xml:"rpm:buildhost"`
			Sourcerpm   string `xml:"rpm:sourcerpm"`
			HeaderRange struct {
				Start int `xml:"start,attr"`
				End   int `xml:"end,attr"`
			} `xml:"rpm:header-range"`
			Provides  *xmlDeps  `xml:"rpm:provides,omitempty"`
			Requires  *xmlDeps  `xml:"rpm:requires,omitempty"`
			Conflicts *xmlDeps  `xml:"rpm:conflicts,omitempty"`
			Obsoletes *xmlDeps  `xml:"rpm:obsoletes,omitempty"`
			Files     []rpmFile `xml:"file"`
		} `xml:"format"`
	}
	xmlPrimary struct {
		XMLName  xml.Name            `xml:"metadata"`
		Xmlns    string              `xml:"xmlns,attr"`
		XmlnsRPM string              `xml:"xmlns:rpm,attr"`
		Count    int                 `xml:"packages,attr"`
		Packages []xmlPrimaryPackage `xml:"package"`
	}
	xmlFilelistsPackage struct {
		PkgID   string     `xml:"pkgid,attr"`
		Name    string     `xml:"name,attr"`
		Arch    string     `xml:"arch,attr"`
		Version xmlVersion `xml:"version"`
		Files   []rpmFile  `xml:"file"`
	}
	xmlFilelists struct {
		XMLName  xml.Name              `xml:"filelists"`
		Xmlns    string                `xml:"xmlns,attr"`
		Count    int                   `xml:"packages,attr"`
		Packages []xmlFilelistsPackage `xml:"package"`
	}
	xmlOtherPackage struct {
		PkgID   string     `xml:"pkgid,attr"`
		Name    string     `xml:"name,attr"`
		Arch    string     `xml:"arch,attr"`
		Version xmlVersion `xml:"version"`
	}
	xmlOther struct {
		XMLName  xml.Name          `xml:"otherdata"`
		Xmlns    string            `xml:"xmlns,attr"`
		Count    int               `xml:"packages,attr"`
		Packages []xmlOtherPackage `xml:"package"`
	}
	xmlRepomdData struct {
		Type         string      `xml:"type,attr"`
		Checksum     xmlChecksum `xml:"checksum"`
		OpenChecksum xmlChecksum `xml:"open-checksum"`
		Location     struct {
			Href string `xml:"href,attr"`
		} `xml:"location"`
		Timestamp int64 `xml:"timestamp"`
		Size      int   `xml:"size"`
		OpenSize  int   `xml:"open-size"`
	}
	xmlRepomd struct {
		XMLName  xml.Name        `xml:"repomd"`
		Xmlns    string          `xml:"xmlns,attr"`
		XmlnsRPM string          `xml:"xmlns:rpm,attr"`
		Revision int64           `xml:"revision"`
		Data     []xmlRepomdData `xml:"data"`
	}
)

func depsOrNil(e []rpmEntry) *xmlDeps {
	if len(e) == 0 {
		return nil
	}
	return &xmlDeps{Entries: e}
}

func buildRPM(opts Options, rpms []string, files *[]string) (int, error) {
	root := filepath.Join(opts.Dir, RPMDir)
	for _, p := range rpms {
		if err := copyFile(p, filepath.Join(root, filepath.Base(p))); err != nil {
			return 0, err
		}
	}
	all, err := listFiles(root, ".rpm")
	if err != nil || len(all) == 0 {
		return 0, err
	}
	sort.Strings(all)
	var pkgs []rpmPackage
	for _, p := range all {
		r, err := readRPM(p)
		if err != nil {
			return 0, err
		}
		pkgs = append(pkgs, r)
	}
	ts := opts.Time.Unix()
	primary := xmlPrimary{Xmlns: "http://linux.duke.edu/metadata/common", XmlnsRPM: "http://linux.duke.edu/metadata/rpm", Count: len(pkgs)}
	filelists := xmlFilelists{Xmlns: "http://linux.duke.edu/metadata/filelists", Count: len(pkgs)}
	other := xmlOther{Xmlns: "http://linux.duke.edu/metadata/other", Count: len(pkgs)}
	for _, r := range pkgs {
		v := xmlVersion{Epoch: r.epoch, Ver: r.version, Rel: r.release}
		var x xmlPrimaryPackage
		x.Type, x.Name, x.Arch, x.Version = "rpm", r.name, r.arch, v
		x.Checksum = xmlChecksum{Type: "sha256", PkgID: "YES", Value: r.sum}
		x.Summary, x.Description, x.Packager, x.URL = r.summary, r.description, r.packager, r.url
		x.Time.File, x.Time.Build = ts, r.buildTime
		x.Size.Package, x.Size.Installed, x.Size.Archive = r.size, r.installed, r.archive
		x.Location.Href = r.file
		f := &x.Format
		f.License, f.Vendor, f.Group, f.Buildhost, f.Sourcerpm = r.license, r.vendor, r.group, r.buildhost, r.sourcerpm
		f.HeaderRange.Start, f.HeaderRange.End = r.hdrStart, r.hdrEnd
		f.Provides, f.Requires, f.Conflicts, f.Obsoletes = depsOrNil(r.provides), depsOrNil(r.requires), depsOrNil(r.conflicts), depsOrNil(r.obsoletes)
		for _, file := range r.files {
			if file.Type != "ghost" && primaryFile(file.Path) {
				f.Files = append(f.Files, file)
			}
		}
		primary.Packages = append(primary.Packages, x)
		filelists.Packages = append(filelists.Packages, xmlFilelistsPackage{PkgID: r.sum, Name: r.name, Arch: r.arch, Version: v, Files: r.files})
		other.Packages = append(other.Packages, xmlOtherPackage{PkgID: r.sum, Name: r.name, Arch: r.arch, Version: v})
	}
	repodata := filepath.Join(root, "repodata")
	old, err := listFiles(repodata, ".gz")
	if err != nil {
		return 0, err
	}
	md := xmlRepomd{Xmlns: "http://linux.duke.edu/metadata/repo", XmlnsRPM: "http://linux.duke.edu/metadata/rpm", Revision: ts}
	keep := map[string]bool{}
	for _, doc := range []struct {
		typ string
		v   any
	}{{"primary", primary}, {"filelists", filelists}, {"other", other}} {
		plain, err := xml.MarshalIndent(doc.v, "", "  ")
		if err != nil {
			return 0, fmt.Errorf("encode %s.xml: %w", doc.typ, err)
		}
		plain = append([]byte(xml.Header), append(plain, '\n')...)
		gz, err := gzipBytes(plain)
		if err != nil {
			return 0, err
		}
		gzSum, plainSum := sha256.Sum256(gz), sha256.Sum256(plain)
		name := hex.EncodeToString(gzSum[:]) + "-" + doc.typ + ".xml.gz"
		if err := writeFile(filepath.Join(repodata, name), gz); err != nil {
			return 0, err
		}
		keep[name] = true
		d := xmlRepomdData{Type: doc.typ, Timestamp: ts, Size: len(gz), OpenSize: len(plain),
			Checksum: xmlChecksum{Type: "sha256", Value: hex.EncodeToString(gzSum[:])}, OpenChecksum: xmlChecksum{Type: "sha256", Value: hex.EncodeToString(plainSum[:])}}
		d.Location.Href = "repodata/" + name
		md.Data = append(md.Data, d)
	}
	repomd, err := xml.MarshalIndent(md, "", "  ")
	if err != nil {
		return 0, fmt.Errorf("encode repomd.xml: %w", err)
	}
	repomd = append([]byte(xml.Header), append(repomd, '\n')...)
	p := filepath.Join(repodata, "repomd.xml")
	if err := writeFile(p, repomd); err != nil {
		return 0, err
	}
	*files = append(*files, p)
	// Metadata files of earlier builds go once repomd.xml no longer names them.
	for _, o := range old {
		if !keep[filepath.Base(o)] {
			if err := os.Remove(o); err != nil {
				return 0, fmt.Errorf("remove old repodata: %w", err)
			}
		}
	}
	asc := p + ".asc"
	if !opts.Keys.HasPGP() {
		if err := os.Remove(asc); err != nil && !os.IsNotExist(err) {
			return 0, fmt.Errorf("remove stale %s: %w", asc, err)
		}
		return len(pkgs), nil
	}
	var sig bytes.Buffer
	if err := opts.Keys.DetachArmored(&sig, bytes.NewReader(repomd)); err != nil {
		return 0, fmt.Errorf("sign %s: %w", p, err)
	}
	if err := writeFile(asc, sig.Bytes()); err != nil {
		return 0, err
	}
	*files = append(*files, asc)
	return len(pkgs), nil
}
