package main

import (
	"context"
	"fmt"
	"os"

	"github.com/kvmmanager/guest-agent/build/launcher"
	"github.com/kvmmanager/guest-agent/build/pipeline"
)

// options builds in root into root/dist, with the signing keys the
// environment names (build/signing, README "Verifying a release"). For a
// target with a quick stamp it takes the snapshot of the inputs first,
// before the pipeline reads any of them.
func options(root, target string) pipeline.Options {
	opts := pipeline.Options{Root: root, Out: os.Stdout, Getenv: os.Getenv}
	if launcher.IsQuick(target) {
		snap, err := launcher.TakeFor(root, target)
		// Without a key (signing keys set: signed builds always go
		// through the pipeline; or a failure that the pipeline meets
		// too and reports) the run writes no quick stamp.
		if err == nil {
			opts.Quick = snap
		}
	}
	return opts
}

func buildTarget(ctx context.Context, root string) error {
	_, err := pipeline.Binaries(ctx, options(root, "build"))
	return err
}

func packagesTarget(ctx context.Context, root string) error {
	_, err := pipeline.Packages(ctx, options(root, "packages"))
	return err
}

func isoTarget(ctx context.Context, root string) error {
	_, err := pipeline.ISO(ctx, options(root, "iso"))
	return err
}

func releaseTarget(ctx context.Context, root string) error {
	_, err := pipeline.Release(ctx, options(root, "release"))
	return err
}

func repoTarget(ctx context.Context, root string) error {
	res, err := pipeline.Repo(ctx, options(root, "repo"))
	if err != nil {
		return err
	}
	fmt.Printf("dist/repo: %d deb, %d rpm, %d apk\n", res.Debs, res.RPMs, res.APKs)
	return nil
}
