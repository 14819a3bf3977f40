package main

import (
	"context"
	"fmt"
	"os"

	"github.com/kvmmanager/guest-agent/build/bench"
)

// benchTarget benchmarks the agent side by side with qemu-ga and writes
// dist/bench/report.{md,json}; the environment knobs are the Bench target's
// (magefiles/bench.go).
func benchTarget(ctx context.Context, root string) error {
	rounds := 0
	if s := os.Getenv("BENCH_ROUNDS"); s != "" {
		if _, err := fmt.Sscan(s, &rounds); err != nil {
			return fmt.Errorf("BENCH_ROUNDS=%q: %w", s, err)
		}
	}
	if v := os.Getenv("BENCH_ONLY"); v != "" && v != "build" {
		return fmt.Errorf("BENCH_ONLY=%q: the only value is build", v)
	}
	rep, err := bench.Run(ctx, bench.Options{
		Root:      root,
		Smoke:     os.Getenv("BENCH_SMOKE") == "1",
		Rounds:    rounds,
		Build:     os.Getenv("BENCH_BUILD") != "0",
		Micro:     os.Getenv("BENCH_MICRO") != "0",
		Place:     bench.Placement(os.Getenv("BENCH_PLACE")),
		Out:       os.Stdout,
		BuildOnly: os.Getenv("BENCH_ONLY") == "build",
	})
	if err != nil {
		return err
	}
	table := rep.Table()
	if rep.BuildOnly {
		table = rep.BuildTable()
	}
	name := rep.FileName()
	fmt.Printf("\n%s\nwrote dist/bench/%s.md and dist/bench/%s.json\n", table, name, name)
	return nil
}
