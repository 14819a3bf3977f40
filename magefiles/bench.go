//go:build mage

package main

import (
	"context"
	"fmt"
	"os"

	"github.com/kvmmanager/guest-agent/build/bench"
)

// Bench benchmarks the agent side by side with qemu-ga and writes dist/bench/report.{md,json}.
// BENCH_SMOKE=1 runs a few hundred operations only (CI) into dist/bench/report-smoke.*; BENCH_BUILD=0 skips the build figures,
// BENCH_MICRO=0 the Go micro-benchmarks; BENCH_ROUNDS=N sets the rounds (at least 5);
// BENCH_PLACE=same|split|free sets the CPU placement (default same: client and agents on CPU 0);
// BENCH_ONLY=build measures the build figures alone into dist/bench/report-build.*.
func Bench(ctx context.Context) error {
	opts, err := buildOptions()
	if err != nil {
		return err
	}
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
		Root:      opts.Root,
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
