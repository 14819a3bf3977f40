package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kvmmanager/guest-agent/build/binaries"
	"github.com/kvmmanager/guest-agent/build/version"
)

// rebuildRuns is how often the no-op and one-file rebuilds are measured.
const rebuildRuns = 3

// editCandidates are the packages whose first source file is edited for
// the one-file rebuild, in order of preference: a method handler is what
// a developer touches most.
var editCandidates = []string{"agent/methods", "agent/server", "agent/cmd/kvmmanager-agent"}

// measureBuild times `go tool mage iso` in a copy of the working tree, so
// that neither the checkout nor the user's build cache is touched: cold
// (empty GOCACHE, mage cache and dist/), warm (warm caches, empty dist/),
// no-op (everything up to date) and after editing one agent file, against
// a bare `go build` of the agent for both architectures after the same kind
// of edit.
func measureBuild(ctx context.Context, root string, out io.Writer) ([]BuildFigure, error) {
	info, err := version.Resolve(root)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "kvmbench-build-")
	if err != nil {
		return nil, fmt.Errorf("create build work directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	tree := filepath.Join(tmp, "tree")
	if err := copyTree(ctx, root, tree); err != nil {
		return nil, err
	}
	env := append(os.Environ(),
		"GOCACHE="+filepath.Join(tmp, "gocache"),
		"MAGEFILE_CACHE="+filepath.Join(tmp, "magecache"),
		version.EnvVersion+"="+info.Version,
		version.EnvSourceDateEpoch+"="+strconv.FormatInt(info.SourceDateEpoch, 10),
	)
	var lastLog string
	mage := func() (float64, error) {
		secs, out, err := timeCommand(ctx, tree, env, "go", "tool", "mage", "iso")
		lastLog = out
		return secs, err
	}
	var runs buildRuns
	figs := func() []BuildFigure { return buildFigures(runs) }

	fmt.Fprintln(out, "bench: build: cold go tool mage iso (empty build cache)")
	cold, err := mage()
	if err != nil {
		return figs(), err
	}
	runs.cold = []float64{cold}

	fmt.Fprintln(out, "bench: build: warm go tool mage iso (empty dist/)")
	if err := os.RemoveAll(filepath.Join(tree, "dist")); err != nil {
		return figs(), fmt.Errorf("remove %s: %w", filepath.Join(tree, "dist"), err)
	}
	warm, err := mage()
	if err != nil {
		return figs(), err
	}
	runs.warm = []float64{warm}

	fmt.Fprintln(out, "bench: build: no-op go tool mage iso")
	for range rebuildRuns {
		s, err := mage()
		if err != nil {
			return figs(), err
		}
		runs.noop = append(runs.noop, s)
	}

	edited, err := editTarget(tree)
	if err != nil {
		return figs(), err
	}
	rel, _ := filepath.Rel(tree, edited)
	runs.edited = rel
	fmt.Fprintf(out, "bench: build: rebuilds after editing %s\n", rel)
	for i := range rebuildRuns {
		if err := appendComment(edited, fmt.Sprintf("// bench edit %d for mage iso", i)); err != nil {
			return figs(), err
		}
		s, err := mage()
		if err != nil {
			return figs(), err
		}
		runs.rebuild = append(runs.rebuild, s)
		runs.rebuildLog = lastLog
		if err := appendComment(edited, fmt.Sprintf("// bench edit %d for go build", i)); err != nil {
			return figs(), err
		}
		var total float64
		for _, arch := range binaries.Arches {
			archEnv := append(env[:len(env):len(env)], "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
			s, _, err := timeCommand(ctx, tree, archEnv, "go", "build", "-trimpath", "-o", filepath.Join(tmp, "bare-"+arch), binaries.Agent.Package)
			if err != nil {
				return figs(), err
			}
			total += s
		}
		runs.bare = append(runs.bare, total)
	}
	return figs(), nil
}

// buildRuns are the measured build times in seconds.
type buildRuns struct {
	cold, warm, noop, rebuild, bare []float64
	edited                          string // the file edited for rebuild and bare
	rebuildLog                      string // what the last one-file rebuild printed
}

// buildFigures turns the runs measured so far into figures with their goals:
// a no-op build within 0.5 s, a one-file rebuild within 1.3× the bare go
// build of both architectures.
func buildFigures(r buildRuns) []BuildFigure {
	var figs []BuildFigure
	add := func(f BuildFigure) {
		if len(f.Runs) > 0 {
			f.Seconds = median(f.Runs)
			figs = append(figs, f)
		}
	}
	add(BuildFigure{Key: "iso_cold", Label: "cold `go tool mage iso`", Detail: "empty GOCACHE, mage cache and dist/; module cache warm", Runs: r.cold})
	add(BuildFigure{Key: "iso_warm", Label: "warm `go tool mage iso`", Detail: "warm build cache, empty dist/", Runs: r.warm})
	noop := BuildFigure{Key: "iso_noop", Label: "no-op `go tool mage iso`", Detail: "nothing changed since the previous run", Runs: r.noop, Goal: "≤ 0.5 s"}
	if len(r.noop) > 0 {
		met := median(r.noop) <= 0.5
		noop.Met = &met
	}
	add(noop)
	rebuild := BuildFigure{Key: "iso_rebuild", Label: "`go tool mage iso` after editing one agent file",
		Detail: "a comment appended to " + r.edited + " (in a copy of the tree) before each run", Runs: r.rebuild,
		RatioOf: "bare_build", RatioGoal: 1.3, Log: strings.TrimSpace(r.rebuildLog)}
	if len(r.rebuild) > 0 && len(r.bare) > 0 {
		b := median(r.bare)
		met := median(r.rebuild) <= 1.3*b
		rebuild.Met = &met
		rebuild.Goal = fmt.Sprintf("≤ 1.3× bare (≤ %.2f s); is %.2f×", 1.3*b, median(r.rebuild)/b)
	}
	add(rebuild)
	add(BuildFigure{Key: "bare_build", Label: "bare `go build` of the agent, amd64 then arm64, after the same edit",
		Detail: "CGO_ENABLED=0 go build -trimpath ./agent/cmd/kvmmanager-agent, once per architecture, times summed", Runs: r.bare})
	return figs
}

// timeCommand runs name args in dir and returns its wall time in seconds
// and its output.
func timeCommand(ctx context.Context, dir string, env []string, name string, args ...string) (float64, string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		tail := out.String()
		if len(tail) > 3000 {
			tail = tail[len(tail)-3000:]
		}
		return 0, "", fmt.Errorf("%s %s in %s: %w\n%s", name, strings.Join(args, " "), dir, err, tail)
	}
	return d.Seconds(), out.String(), nil
}

// copyTree copies the tracked and untracked-but-not-ignored files of the
// git checkout at root to dst (so dist/ and other ignored output stay out).
func copyTree(ctx context.Context, root, dst string) error {
	cmd := exec.CommandContext(ctx, "git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	cmd.Dir = root
	list, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("list files of %s: %w", root, err)
	}
	for _, rel := range strings.Split(string(list), "\x00") {
		if rel == "" {
			continue
		}
		src := filepath.Join(root, rel)
		st, err := os.Lstat(src)
		if os.IsNotExist(err) {
			continue // deleted in the working tree
		}
		if err != nil {
			return fmt.Errorf("stat %s: %w", src, err)
		}
		to := filepath.Join(dst, rel)
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return fmt.Errorf("create %s: %w", filepath.Dir(to), err)
		}
		switch {
		case st.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(src)
			if err != nil {
				return fmt.Errorf("read link %s: %w", src, err)
			}
			if err := os.Symlink(target, to); err != nil {
				return fmt.Errorf("create link %s: %w", to, err)
			}
		case st.Mode().IsRegular():
			b, err := os.ReadFile(src)
			if err != nil {
				return fmt.Errorf("read %s: %w", src, err)
			}
			if err := os.WriteFile(to, b, st.Mode().Perm()); err != nil {
				return fmt.Errorf("write %s: %w", to, err)
			}
		}
	}
	return nil
}

// editTarget picks the agent source file the rebuild figure edits.
func editTarget(tree string) (string, error) {
	for _, pkg := range editCandidates {
		matches, _ := filepath.Glob(filepath.Join(tree, pkg, "*.go"))
		for _, m := range matches {
			if !strings.HasSuffix(m, "_test.go") {
				return m, nil
			}
		}
	}
	return "", fmt.Errorf("no agent source file to edit under %s (looked in %v)", tree, editCandidates)
}

func appendComment(path, comment string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	if _, err := fmt.Fprintf(f, "\n%s\n", comment); err != nil {
		f.Close()
		return fmt.Errorf("append to %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}
