package pipeline

import (
	"context"
	"path/filepath"
	"time"

	"github.com/kvmmanager/guest-agent/build/repo"
)

// RepoDir is the repositories' directory under dist.
func RepoDir(dist string) string { return filepath.Join(dist, "repo") }

// Repo builds the packages and adds them to the apt, dnf and Alpine
// repositories in Dist/repo/ (keeping the packages already there), signing
// the metadata with the keys Getenv names.
func Repo(ctx context.Context, opts Options) (repo.Result, error) {
	r, err := start(opts)
	if err != nil {
		return repo.Result{}, err
	}
	defer r.close()
	pkgs, _, _, err := r.packages(ctx)
	if err != nil {
		return repo.Result{}, err
	}
	r.sayKeys()
	t0 := time.Now()
	var paths []string
	for _, p := range pkgs {
		paths = append(paths, p.Path)
	}
	res, err := repo.Build(repo.Options{Dir: RepoDir(r.opts.Dist), Packages: paths, Keys: r.keys, Time: r.info.Time()})
	if err != nil {
		return repo.Result{}, err
	}
	for _, f := range res.Files {
		r.line(f, time.Since(t0), false)
	}
	return res, nil
}
