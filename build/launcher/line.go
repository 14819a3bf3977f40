package launcher

import (
	"fmt"
	"path/filepath"
	"time"
)

// Line is the line the pipeline prints for one artifact: its path (relative
// to wd when that is shorter), its size (size < 0: unknown) and how long it
// took, or "up to date". The quick path prints the same lines.
func Line(wd, path string, size int64, d time.Duration, upToDate bool) string {
	sz := "?"
	if size >= 0 {
		sz = humanSize(size)
	}
	rel := path
	if wd != "" {
		if p, err := filepath.Rel(wd, path); err == nil && len(p) < len(path) {
			rel = p
		}
	}
	took := "up to date"
	if !upToDate {
		took = d.Round(time.Millisecond).String()
	}
	return fmt.Sprintf("%-60s %10s  %s\n", rel, sz, took)
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
