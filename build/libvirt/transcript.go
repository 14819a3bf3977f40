package libvirt

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// Step is one virsh command of a guest's run and how its checks went.
type Step struct {
	Name    string   // what is checked, the same in both guests' runs
	Command string   // the virsh command line
	Output  string   // what it printed
	Failed  []string // failed checks against the guest's truth; none: passed
	// Shape is the output's structure (field names and types, table
	// columns), compared between the guests; values are not.
	Shape []string
}

// Transcript is one guest's run.
type Transcript struct {
	Kind  string   // KindOurs or KindReference
	Agent string   // the agent's guest-info version
	Notes []string // how the guest was set up beyond the install
	Steps []Step
}

// Step returns the step named name, or nil.
func (t *Transcript) Step(name string) *Step {
	for i := range t.Steps {
		if t.Steps[i].Name == name {
			return &t.Steps[i]
		}
	}
	return nil
}

// Save writes t as JSON to path.
func (t *Transcript) Save(path string) error {
	b, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		return fmt.Errorf("encode transcript %s: %w", t.Kind, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("save transcript: %w", err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("save transcript: %w", err)
	}
	return nil
}

// LoadTranscript reads a transcript saved by Save.
func LoadTranscript(path string) (*Transcript, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load transcript: %w", err)
	}
	var t Transcript
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("load transcript %s: %w", path, err)
	}
	return &t, nil
}

// Difference is one way the two guests' runs differ.
type Difference struct {
	Step string
	What string
	// Documented is why the difference is expected (from Documented), or ""
	// when it is not: the test fails on those.
	Documented string
}

// Key is how Documented names the difference.
func (d Difference) Key() string { return d.Step + ": " + d.What }

// Compare lists the differences between the reference's run and ours: a
// step only one of them has, a step that passed in one and failed in the
// other, and fields or columns only one of them printed.
func Compare(ref, ours *Transcript) []Difference {
	var diffs []Difference
	add := func(step, what string) {
		d := Difference{Step: step, What: what}
		d.Documented = Documented[d.Key()]
		diffs = append(diffs, d)
	}
	for _, name := range stepNames(ref, ours) {
		r, o := ref.Step(name), ours.Step(name)
		switch {
		case r == nil:
			add(name, "only ours ran it")
			continue
		case o == nil:
			add(name, "only qemu-ga ran it")
			continue
		}
		if rf, of := len(r.Failed) > 0, len(o.Failed) > 0; rf != of {
			if rf {
				add(name, "fails with qemu-ga only")
			} else {
				add(name, "fails with ours only")
			}
		}
		for _, s := range r.Shape {
			if !slices.Contains(o.Shape, s) {
				add(name, "only qemu-ga has "+s)
			}
		}
		for _, s := range o.Shape {
			if !slices.Contains(r.Shape, s) {
				add(name, "only ours has "+s)
			}
		}
	}
	return diffs
}

func stepNames(ts ...*Transcript) []string {
	var names []string
	for _, t := range ts {
		for _, s := range t.Steps {
			if !slices.Contains(names, s.Name) {
				names = append(names, s.Name)
			}
		}
	}
	return names
}

// JSONShape is the structure of a JSON document: one "path:type" per
// member, array elements under "[]" (all elements merged).
func JSONShape(doc string) []string {
	var v any
	if err := json.Unmarshal([]byte(doc), &v); err != nil {
		return []string{"not JSON"}
	}
	set := map[string]bool{}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch x := v.(type) {
		case map[string]any:
			set[path+":object"] = true
			for k, e := range x {
				walk(path+"."+k, e)
			}
		case []any:
			set[path+":array"] = true
			for _, e := range x {
				walk(path+"[]", e)
			}
		case string:
			set[path+":string"] = true
		case float64:
			set[path+":number"] = true
		case bool:
			set[path+":bool"] = true
		case nil:
			set[path+":null"] = true
		}
	}
	walk("", v)
	return sortedKeys(set)
}

var indexRe = regexp.MustCompile(`\.[0-9]+(\.|$)`)

// KeyShape is the structure of `virsh guestinfo` output: its keys, with
// indexes replaced by N.
func KeyShape(out string) []string {
	set := map[string]bool{}
	for k := range ParseKeyValues(out) {
		set[indexRe.ReplaceAllString(indexRe.ReplaceAllString(k, ".N$1"), ".N$1")] = true
	}
	return sortedKeys(set)
}

// ParseKeyValues parses "key : value" lines (virsh guestinfo, domtime).
func ParseKeyValues(out string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok {
			continue
		}
		m[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return m
}

// Table parses a virsh table (a header line, a dashes line, rows of
// columns separated by runs of spaces).
func Table(out string) (header []string, rows [][]string) {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "---") && i > 0 {
			header = splitColumns(lines[i-1])
			for _, r := range lines[i+1:] {
				if strings.TrimSpace(r) != "" {
					rows = append(rows, splitColumns(r))
				}
			}
			return header, rows
		}
	}
	return nil, nil
}

var columnSep = regexp.MustCompile(`\s{2,}`)

func splitColumns(l string) []string {
	return columnSep.Split(strings.TrimSpace(l), -1)
}

// TableShape is a table's structure: its columns.
func TableShape(out string) []string {
	header, _ := Table(out)
	shape := make([]string, len(header))
	for i, h := range header {
		shape[i] = "column " + h
	}
	return shape
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Markdown renders the two runs side by side (each step: the command, the
// reference's output, ours) with the comparison first.
func Markdown(ref, ours *Transcript, diffs []Difference) []byte {
	var b bytes.Buffer
	b.WriteString("# virsh against kvmmanager-agent and qemu-ga, side by side\n\n")
	b.WriteString("Generated by `go tool mage libvirt` (build/libvirt). Each step ran through real virsh and libvirt\n")
	b.WriteString("against a Debian 12 guest and was checked against the guest's own view (the test shell).\n\n")
	agent := func(t *Transcript) string {
		if t == nil {
			return "not run"
		}
		return "`" + t.Agent + "`"
	}
	fmt.Fprintf(&b, "- qemu-ga (reference): %s\n- ours (kvmmanager-agent): %s\n", agent(ref), agent(ours))
	for _, t := range []*Transcript{ref, ours} {
		if t != nil {
			for _, n := range t.Notes {
				fmt.Fprintf(&b, "- %s: %s\n", t.Kind, n)
			}
		}
	}
	b.WriteString("\n")
	b.WriteString("## Summary\n\n| step | qemu-ga | ours |\n|---|---|---|\n")
	var all []*Transcript
	for _, t := range []*Transcript{ref, ours} {
		if t != nil {
			all = append(all, t)
		}
	}
	verdict := func(t *Transcript, name string) string {
		if t == nil {
			return "not run"
		}
		s := t.Step(name)
		switch {
		case s == nil:
			return "—"
		case len(s.Failed) == 0:
			return "pass"
		default:
			return "FAIL: " + escapeCell(strings.Join(s.Failed, "; "))
		}
	}
	for _, name := range stepNames(all...) {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", escapeCell(name), verdict(ref, name), verdict(ours, name))
	}
	b.WriteString("\n## Differences\n\n")
	switch {
	case ref == nil || ours == nil:
		b.WriteString("Only one guest ran: nothing compared.\n")
	case len(diffs) == 0:
		b.WriteString("None: the same steps passed, with the same fields and columns.\n")
	default:
		b.WriteString("| step | difference | documented as |\n|---|---|---|\n")
		for _, d := range diffs {
			doc := d.Documented
			if doc == "" {
				doc = "**UNDOCUMENTED**"
			}
			fmt.Fprintf(&b, "| %s | %s | %s |\n", escapeCell(d.Step), escapeCell(d.What), escapeCell(doc))
		}
	}
	b.WriteString("\n## Transcript\n")
	for _, name := range stepNames(all...) {
		fmt.Fprintf(&b, "\n### %s\n", name)
		for _, t := range []*Transcript{ref, ours} {
			if t == nil {
				continue
			}
			s := t.Step(name)
			if s == nil {
				continue
			}
			fmt.Fprintf(&b, "\n%s:\n\n```\n$ %s\n%s\n```\n", t.Kind, s.Command, strings.TrimRight(s.Output, "\n"))
		}
	}
	return b.Bytes()
}

func escapeCell(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "|", `\|`), "\n", " ")
}
