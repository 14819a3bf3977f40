//go:build mage

package main

import (
	"context"

	"github.com/kvmmanager/guest-agent/build/launcher"
)

// Bench benchmarks the agent side by side with qemu-ga and writes dist/bench/report.{md,json}.
// BENCH_SMOKE=1 runs a few hundred operations only (CI) into dist/bench/report-smoke.*; BENCH_BUILD=0 skips the build figures,
// BENCH_MICRO=0 the Go micro-benchmarks; BENCH_ROUNDS=N sets the rounds (at least 5);
// BENCH_PLACE=same|split|free sets the CPU placement (default same: client and agents on CPU 0);
// BENCH_ONLY=build measures the build figures alone into dist/bench/report-build.*.
func Bench(ctx context.Context) error {
	return launcher.Run(ctx, "bench")
}
