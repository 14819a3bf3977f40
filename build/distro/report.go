package distro

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Report is what the guest's administrator (guest/kvmtest-admin.sh) wrote to
// the VM's second serial port: single lines "KVMTEST key=value" and blocks
// "KVMTEST-BEGIN name" ... "KVMTEST-END name rc=N".
type Report struct {
	Lines    []string  // the "key=value" words of every KVMTEST line, in order
	Sections []Section // every complete block, in order
	Open     *Section  // a block that has begun but not ended, if any
}

// Section is one block of a Report.
type Section struct {
	Name   string
	Output string // what the command printed (stdout and stderr)
	RC     int    // its exit code
}

var endRe = regexp.MustCompile(`^KVMTEST-END (\S+) rc=(\d+)$`)

// ParseReport parses the report port's raw bytes. Carriage returns are
// dropped (a serial line may translate newlines).
func ParseReport(data []byte) Report {
	var r Report
	var out strings.Builder
	for _, l := range strings.Split(strings.ReplaceAll(string(data), "\r", ""), "\n") {
		switch {
		case r.Open == nil && strings.HasPrefix(l, "KVMTEST "):
			r.Lines = append(r.Lines, strings.TrimPrefix(l, "KVMTEST "))
		case r.Open == nil && strings.HasPrefix(l, "KVMTEST-BEGIN "):
			r.Open = &Section{Name: strings.TrimPrefix(l, "KVMTEST-BEGIN ")}
			out.Reset()
		case r.Open != nil && endRe.MatchString(l):
			m := endRe.FindStringSubmatch(l)
			if m[1] != r.Open.Name {
				out.WriteString(l + "\n")
				continue
			}
			r.Open.RC, _ = strconv.Atoi(m[2])
			// The END marker follows a newline the admin adds in case the
			// output did not end with one: trailing newlines are not output.
			r.Open.Output = strings.TrimRight(out.String(), "\n")
			r.Sections = append(r.Sections, *r.Open)
			r.Open = nil
		case r.Open != nil:
			out.WriteString(l + "\n")
		}
	}
	return r
}

// Section returns the last complete block named name.
func (r Report) Section(name string) (Section, bool) {
	for i := len(r.Sections) - 1; i >= 0; i-- {
		if r.Sections[i].Name == name {
			return r.Sections[i], true
		}
	}
	return Section{}, false
}

// Has reports whether a single line equals line.
func (r Report) Has(line string) bool {
	for _, l := range r.Lines {
		if l == line {
			return true
		}
	}
	return false
}

// ReadReport reads and parses the report file at path.
func ReadReport(path string) (Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Report{}, fmt.Errorf("read guest report %s: %w", path, err)
	}
	return ParseReport(b), nil
}

// WaitReport polls the report file at path until ok accepts it, done is
// closed (the VM exited: one last read decides) or ctx ends.
func WaitReport(ctx context.Context, path string, done <-chan struct{}, ok func(Report) bool) (Report, error) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		r, err := ReadReport(path)
		if err == nil && ok(r) {
			return r, nil
		}
		select {
		case <-ctx.Done():
			return r, fmt.Errorf("waiting for the guest report %s: %w", path, ctx.Err())
		case <-done:
			r, err := ReadReport(path)
			if err == nil && ok(r) {
				return r, nil
			}
			return r, fmt.Errorf("the VM stopped before the guest report %s showed what was expected", path)
		case <-tick.C:
		}
	}
}

// JournalEntry is one line of `journalctl -o short-unix` or of the agent's
// log file.
type JournalEntry struct {
	Time    float64 // seconds since the epoch
	Message string  // the text after "host ident[pid]: "
}

// ParseJournal parses `journalctl -o short-unix` output, skipping lines that
// are not entries ("-- No entries --", "-- Boot ... --").
func ParseJournal(s string) []JournalEntry {
	var es []JournalEntry
	for _, l := range strings.Split(s, "\n") {
		ts, rest, ok := strings.Cut(l, " ")
		if !ok {
			continue
		}
		t, err := strconv.ParseFloat(ts, 64)
		if err != nil {
			continue
		}
		// rest: "hostname ident[pid]: message"
		if i := strings.Index(rest, ": "); i >= 0 {
			rest = rest[i+2:]
		}
		es = append(es, JournalEntry{Time: t, Message: rest})
	}
	return es
}

// ParseSlog parses the agent's log file (log/slog text lines,
// "time=2006-01-02T15:04:05.000Z level=INFO msg=..."), skipping lines
// without a time.
func ParseSlog(s string) []JournalEntry {
	var es []JournalEntry
	for _, l := range strings.Split(s, "\n") {
		ts, rest, ok := strings.Cut(l, " ")
		if !ok || !strings.HasPrefix(ts, "time=") {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(ts, "time="))
		if err != nil {
			continue
		}
		es = append(es, JournalEntry{Time: float64(t.UnixNano()) / 1e9, Message: rest})
	}
	return es
}

// SystemdUnits splits a unit-list property value of `systemctl show`
// (WantedBy=, BindsTo=, ...) into unit names. systemctl quotes and
// C-escapes names with special characters ("dev-virtio\\x2dports-...").
func SystemdUnits(v string) []string {
	var units []string
	for _, w := range strings.Fields(v) {
		if u, err := strconv.Unquote(w); err == nil {
			w = u
		}
		units = append(units, w)
	}
	return units
}

// SystemdProperties parses `systemctl show -p A -p B` output.
func SystemdProperties(s string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), "="); ok {
			m[k] = v
		}
	}
	return m
}
