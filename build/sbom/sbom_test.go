package sbom

import (
	"bytes"
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// schema compiles the vendored CycloneDX 1.6 schema (testdata/schema/SOURCE.md)
// with the two schemas it references, offline.
func schema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	for _, name := range []string{"bom-1.6.schema.json", "spdx.schema.json", "jsf-0.82.schema.json"} {
		f, err := os.Open(filepath.Join("testdata", "schema", name))
		if err != nil {
			t.Fatal(err)
		}
		doc, err := jsonschema.UnmarshalJSON(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := c.AddResource("http://cyclonedx.org/schema/"+name, doc); err != nil {
			t.Fatal(err)
		}
	}
	s, err := c.Compile("http://cyclonedx.org/schema/bom-1.6.schema.json")
	if err != nil {
		t.Fatalf("compile schema: %v", err)
	}
	return s
}

var (
	progOnce sync.Once
	progPath string
	progErr  error
)

// self is testdata/prog built once: a real Go binary with real module
// dependencies (a test binary's build info lists none).
func self(t *testing.T) string {
	t.Helper()
	progOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sbom-prog-")
		if err != nil {
			progErr = err
			return
		}
		progPath = filepath.Join(dir, "prog")
		out, err := exec.Command("go", "build", "-trimpath", "-o", progPath, "./testdata/prog").CombinedOutput()
		if err != nil {
			progErr = fmt.Errorf("go build ./testdata/prog: %v\n%s", err, out)
		}
	})
	if progErr != nil {
		t.Fatal(progErr)
	}
	return progPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if progPath != "" {
		os.RemoveAll(filepath.Dir(progPath))
	}
	os.Exit(code)
}

func TestSBOMValidatesAgainstCycloneDX16Schema(t *testing.T) {
	var out bytes.Buffer
	in := Input{Path: self(t), Name: "kvmmanager-agent", Version: "1.2.3", Time: time.Unix(1700000000, 0)}
	if err := Write(&out, in); err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(out.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	s := schema(t)
	if err := s.Validate(doc); err != nil {
		t.Fatalf("SBOM does not validate against CycloneDX 1.6:\n%v\n%s", err, out.String())
	}
	// The validator is real: documents the schema forbids are refused.
	for name, edit := range map[string]func(m map[string]any){
		"wrong bomFormat":   func(m map[string]any) { m["bomFormat"] = "SPDX" },
		"bad serial number": func(m map[string]any) { m["serialNumber"] = "not-a-urn" },
		"unknown key":       func(m map[string]any) { m["surprise"] = true },
		"hash not hex": func(m map[string]any) {
			m["metadata"].(map[string]any)["component"].(map[string]any)["hashes"] = []any{map[string]any{"alg": "SHA-256", "content": "zz"}}
		},
	} {
		var m map[string]any
		if err := json.Unmarshal(out.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		edit(m)
		b, _ := json.Marshal(m)
		bad, _ := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if s.Validate(bad) == nil {
			t.Errorf("%s: the schema accepted it", name)
		}
	}
}

func TestSBOMListsToolchainAndEveryModule(t *testing.T) {
	p := self(t)
	bi, err := buildinfo.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(bi.Deps) == 0 {
		t.Fatal("test binary has no module dependencies to check against")
	}
	bom, err := Build(Input{Path: p, Name: "x", Version: "1.0.0", Time: time.Unix(0, 0)})
	if err != nil {
		t.Fatal(err)
	}
	type comp struct{ version, sum string }
	got := map[string]comp{}
	for _, c := range *bom.Components {
		var sum string
		if c.Properties != nil {
			for _, p := range *c.Properties {
				if p.Name == PropModuleSum {
					sum = p.Value
				}
			}
		}
		got[c.Name] = comp{c.Version, sum}
	}
	if g := got["go"]; "go"+g.version != bi.GoVersion {
		t.Errorf("toolchain component version %q, binary built by %s", g.version, bi.GoVersion)
	}
	for _, m := range bi.Deps {
		want := m.Sum
		if m.Replace != nil {
			want = m.Replace.Sum
		}
		g, ok := got[m.Path]
		if !ok {
			t.Errorf("module %s missing", m.Path)
			continue
		}
		if g.version != m.Version || g.sum != want || !strings.HasPrefix(g.sum, "h1:") {
			t.Errorf("module %s: version %q sum %q, want %q %q", m.Path, g.version, g.sum, m.Version, want)
		}
	}
	h := (*bom.Metadata.Component.Hashes)[0]
	sum, _ := fileSHA256(p)
	if h.Value != sum {
		t.Errorf("main component hash %s, file's %s", h.Value, sum)
	}
}

func TestSBOMIsReproducible(t *testing.T) {
	in := Input{Path: self(t), Name: "kvmmanager-agent", Version: "1.2.3", Time: time.Unix(1700000000, 0)}
	var a, b bytes.Buffer
	if err := Write(&a, in); err != nil {
		t.Fatal(err)
	}
	if err := Write(&b, in); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("two SBOMs of one binary differ")
	}
	if !strings.Contains(a.String(), `"timestamp": "2023-11-14T22:13:20Z"`) {
		t.Errorf("timestamp is not SOURCE_DATE_EPOCH:\n%.600s", a.String())
	}
}

func TestSBOMOfNonGoFileFails(t *testing.T) {
	p := filepath.Join(t.TempDir(), "not-go")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	err := Write(&bytes.Buffer{}, Input{Path: p, Name: "x", Version: "1"})
	if err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("want an error naming %s, got %v", p, err)
	}
}
