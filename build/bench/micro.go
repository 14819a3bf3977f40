package bench

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// runMicro runs the agent's Go micro-benchmarks and parses their results.
func runMicro(ctx context.Context, root string) ([]MicroBenchmark, error) {
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", ".", "-benchmem", "./agent/...")
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return parseBench(out.String()), fmt.Errorf("go test -bench ./agent/...: %w\n%s", err, out.String())
	}
	return parseBench(out.String()), nil
}

// parseBench extracts the benchmark lines of `go test -bench -benchmem`
// output, attributing each to the preceding "pkg:" line.
func parseBench(out string) []MicroBenchmark {
	var res []MicroBenchmark
	pkg := ""
	for line := range strings.Lines(out) {
		line = strings.TrimSpace(line)
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = p
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		m := MicroBenchmark{Package: pkg, Name: f[0], Iterations: n}
		var extra []string
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			switch f[i+1] {
			case "ns/op":
				m.NsPerOp = v
			case "B/op":
				m.BytesPerOp = v
			case "allocs/op":
				m.AllocsPerOp = v
			default:
				extra = append(extra, f[i]+" "+f[i+1])
			}
		}
		m.Extra = strings.Join(extra, ", ")
		res = append(res, m)
	}
	return res
}
