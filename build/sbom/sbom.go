// Package sbom writes a CycloneDX 1.6 JSON software bill of materials for a Go
// binary from the binary's own build information (debug/buildinfo): the Go
// toolchain that built it, its main module, and every module linked into it
// with version and go.sum checksum. The document is reproducible: its
// timestamp is SOURCE_DATE_EPOCH and its serial number is derived from the
// binary's hash.
package sbom

import (
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
)

// Extension is the file name suffix of the documents (the CycloneDX convention).
const Extension = ".cdx.json"

// Input describes one binary.
type Input struct {
	Path    string    // the binary
	Name    string    // component name, e.g. kvmmanager-agent
	Version string    // release version
	Time    time.Time // SOURCE_DATE_EPOCH
}

// Property names this package uses (CycloneDX properties are free-form).
const (
	PropModuleSum = "go:module:sum"     // a module's go.sum checksum (h1:...), as in the binary
	PropReplaced  = "go:module:replace" // path@version of a replacement module
	PropSetting   = "go:build:"         // prefix of the build settings (GOOS, GOARCH, -trimpath, -ldflags, vcs...)
)

// Write builds the document of in and writes it to out.
func Write(out io.Writer, in Input) error {
	bom, err := Build(in)
	if err != nil {
		return err
	}
	enc := cdx.NewBOMEncoder(out, cdx.BOMFileFormatJSON)
	enc.SetPretty(true)
	if err := enc.EncodeVersion(bom, cdx.SpecVersion1_6); err != nil {
		return fmt.Errorf("encode SBOM of %s: %w", in.Path, err)
	}
	return nil
}

// WriteFile writes the document of in to path (through a temporary file).
func WriteFile(path string, in Input) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("create temporary file for %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := Write(tmp, in); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("chmod %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp.Name(), path, err)
	}
	return nil
}

// Build returns the document of in.
func Build(in Input) (*cdx.BOM, error) {
	bi, err := buildinfo.ReadFile(in.Path)
	if err != nil {
		return nil, fmt.Errorf("read Go build info of %s: %w", in.Path, err)
	}
	sum, err := fileSHA256(in.Path)
	if err != nil {
		return nil, err
	}
	goVersion := strings.TrimPrefix(bi.GoVersion, "go")
	goos, goarch := "", ""
	var settings []cdx.Property
	for _, s := range bi.Settings {
		settings = append(settings, cdx.Property{Name: PropSetting + s.Key, Value: s.Value})
		switch s.Key {
		case "GOOS":
			goos = s.Value
		case "GOARCH":
			goarch = s.Value
		}
	}
	mainRef := "pkg:golang/" + bi.Main.Path + "@" + purlVersion(in.Version)
	if goos != "" {
		mainRef += "?goarch=" + goarch + "&goos=" + goos
	}
	main := cdx.Component{
		BOMRef:      mainRef,
		Type:        cdx.ComponentTypeApplication,
		Name:        in.Name,
		Version:     in.Version,
		Description: "Go binary " + bi.Path + " (" + goos + "/" + goarch + ")",
		PackageURL:  mainRef,
		Hashes:      &[]cdx.Hash{{Algorithm: cdx.HashAlgoSHA256, Value: sum}},
		Properties:  &settings,
	}
	toolchain := cdx.Component{
		BOMRef:      "pkg:golang/std@" + bi.GoVersion,
		Type:        cdx.ComponentTypeFramework,
		Name:        "go",
		Version:     goVersion,
		PackageURL:  "pkg:golang/std@" + bi.GoVersion,
		Description: "Go toolchain and standard library",
	}
	components := []cdx.Component{toolchain}
	deps := []string{toolchain.BOMRef}
	mods := append([]*debug.Module(nil), bi.Deps...)
	sort.Slice(mods, func(i, j int) bool { return mods[i].Path < mods[j].Path })
	for _, m := range mods {
		c := module(m)
		components = append(components, c)
		deps = append(deps, c.BOMRef)
	}
	bom := cdx.NewBOM()
	bom.SerialNumber = serial(sum)
	bom.Version = 1
	tools := []cdx.Component{toolchain}
	bom.Metadata = &cdx.Metadata{
		Timestamp: in.Time.UTC().Format(time.RFC3339),
		Tools:     &cdx.ToolsChoice{Components: &tools},
		Component: &main,
	}
	bom.Components = &components
	bom.Dependencies = &[]cdx.Dependency{{Ref: main.BOMRef, Dependencies: &deps}}
	return bom, nil
}

func module(m *debug.Module) cdx.Component {
	used := m
	var props []cdx.Property
	if m.Replace != nil {
		used = m.Replace
		props = append(props, cdx.Property{Name: PropReplaced, Value: m.Replace.Path + "@" + m.Replace.Version})
	}
	if used.Sum != "" {
		props = append(props, cdx.Property{Name: PropModuleSum, Value: used.Sum})
	}
	purl := "pkg:golang/" + m.Path + "@" + purlVersion(m.Version)
	c := cdx.Component{
		BOMRef:     purl,
		Type:       cdx.ComponentTypeLibrary,
		Name:       m.Path,
		Version:    m.Version,
		PackageURL: purl,
	}
	if len(props) > 0 {
		c.Properties = &props
	}
	return c
}

// purlVersion percent-encodes a version for a package URL ("+" is reserved).
func purlVersion(v string) string { return strings.ReplaceAll(v, "+", "%2B") }

// serial is a version 4-shaped UUID URN made from the binary's hash, so that
// one binary always gets the same serial number.
func serial(sumHex string) string {
	b, _ := hex.DecodeString(sumHex)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("urn:uuid:%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func fileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", p, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", p, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
