// Command kvmbuild runs the targets of the kvmmanager-agent build that need
// more than the standard library: the pipeline's (build, packages, iso,
// release, repo), test, bench, wineRoot and windowsTest. The mage targets in
// magefiles/ run it through build/launcher, which builds it into
// dist/.builder/ and answers a no-op build, iso or packages without it.
//
// Usage: kvmbuild [-error-file PATH] TARGET
//
// It runs in the repository root. A failed target prints its error to
// stderr, or writes it to PATH (for build/launcher, which hands it to mage),
// and exits with status 1.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
)

// targets are the builder's targets by name (mage's lower-case names).
var targets = map[string]func(ctx context.Context, root string) error{
	"build":       buildTarget,
	"packages":    packagesTarget,
	"iso":         isoTarget,
	"release":     releaseTarget,
	"repo":        repoTarget,
	"test":        testTarget,
	"bench":       benchTarget,
	"wineroot":    wineRootTarget,
	"windowstest": windowsTestTarget,
}

func main() {
	errFile := flag.String("error-file", "", "write a failed target's error to this file instead of stderr")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: kvmbuild [-error-file PATH] TARGET\ntargets: %s\n", strings.Join(targetNames(), " "))
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, flag.Arg(0))
	stop()
	if err == nil {
		return
	}
	if *errFile != "" {
		if werr := os.WriteFile(*errFile, []byte(err.Error()), 0o600); werr == nil {
			os.Exit(1)
		}
	}
	fmt.Fprintf(os.Stderr, "Error: %v\n", err)
	os.Exit(1)
}

func run(ctx context.Context, name string) error {
	t, ok := targets[strings.ToLower(name)]
	if !ok {
		return fmt.Errorf("unknown target %q (targets: %s)", name, strings.Join(targetNames(), " "))
	}
	root, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("working directory: %w", err)
	}
	return t(ctx, root)
}

func targetNames() []string {
	var names []string
	for n := range targets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
