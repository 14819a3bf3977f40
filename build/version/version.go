// Package version resolves the release identity of a build from the git
// checkout: the version string baked into the agent and the packages, the
// commit, and the SOURCE_DATE_EPOCH that every artifact is stamped with.
package version

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// EnvVersion overrides the version derived from git.
const EnvVersion = "KVMMANAGER_VERSION"

// EnvSourceDateEpoch overrides the timestamp derived from the last commit.
const EnvSourceDateEpoch = "SOURCE_DATE_EPOCH"

// Info is the identity of one build.
type Info struct {
	// Version is a semantic version without a leading "v": "1.2.0",
	// "1.2.0+3.gabc1234" (3 commits after tag v1.2.0) or "0.0.0-dev+abc1234".
	Version string
	// Commit is the full hash of HEAD, or "unknown" outside a git checkout.
	Commit string
	// SourceDateEpoch is the Unix time all artifacts carry.
	SourceDateEpoch int64
}

// Time returns SourceDateEpoch as a UTC time.
func (i Info) Time() time.Time { return time.Unix(i.SourceDateEpoch, 0).UTC() }

// Resolve computes the build identity of the git checkout at repoRoot.
//
// Version: $KVMMANAGER_VERSION if set; else `git describe --tags` when a tag
// is reachable (leading "v" dropped, "-N-gHASH" turned into "+N.gHASH");
// else "0.0.0-dev+<short commit>".
// SourceDateEpoch: $SOURCE_DATE_EPOCH if set, else the committer time of HEAD.
// Outside a git checkout both variables must be set.
func Resolve(repoRoot string) (Info, error) {
	info := Info{Commit: "unknown"}
	envVersion := strings.TrimSpace(os.Getenv(EnvVersion))
	// git describe runs meanwhile when the version comes from git: one
	// process's wait instead of two.
	var desc chan describeResult
	if envVersion == "" {
		desc = make(chan describeResult, 1)
		go func() {
			d, err := git(repoRoot, "describe", "--tags", "--long", "--abbrev=7")
			desc <- describeResult{d, err}
		}()
	}
	// The commit and its time in one process.
	var commitTime string
	head, gitErr := git(repoRoot, "log", "-1", "--format=%H %ct", "HEAD")
	if gitErr == nil {
		var ok bool
		if info.Commit, commitTime, ok = strings.Cut(head, " "); !ok || len(info.Commit) < 7 {
			return Info{}, fmt.Errorf("parse git log output %q in %s", head, repoRoot)
		}
	}

	if envVersion != "" {
		if err := Validate(envVersion); err != nil {
			return Info{}, fmt.Errorf("%s=%q: %w", EnvVersion, envVersion, err)
		}
		info.Version = envVersion
	} else {
		d := <-desc
		if gitErr != nil {
			return Info{}, fmt.Errorf("resolve version in %s: not a git checkout (%w); set %s and %s", repoRoot, gitErr, EnvVersion, EnvSourceDateEpoch)
		}
		v, err := fromDescribe(repoRoot, info.Commit, d)
		if err != nil {
			return Info{}, err
		}
		info.Version = v
	}

	if s := strings.TrimSpace(os.Getenv(EnvSourceDateEpoch)); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return Info{}, fmt.Errorf("%s=%q: not a non-negative integer", EnvSourceDateEpoch, s)
		}
		info.SourceDateEpoch = n
	} else {
		if gitErr != nil {
			return Info{}, fmt.Errorf("resolve %s in %s: not a git checkout (%w)", EnvSourceDateEpoch, repoRoot, gitErr)
		}
		n, err := strconv.ParseInt(commitTime, 10, 64)
		if err != nil {
			return Info{}, fmt.Errorf("parse commit time %q of %s: %w", commitTime, repoRoot, err)
		}
		info.SourceDateEpoch = n
	}
	return info, nil
}

// describeResult is what `git describe --tags --long` printed, or its error.
type describeResult struct {
	out string
	err error
}

// describeRe matches `git describe --tags --long` output: TAG-N-gHASH.
var describeRe = regexp.MustCompile(`^v?(.+)-(\d+)-g([0-9a-f]+)$`)

func fromDescribe(root, commit string, d describeResult) (string, error) {
	if d.err != nil {
		// No tag reachable: a development build.
		return "0.0.0-dev+" + commit[:7], nil
	}
	desc := d.out
	m := describeRe.FindStringSubmatch(desc)
	if m == nil {
		return "", fmt.Errorf("parse git describe output %q in %s", desc, root)
	}
	v := m[1]
	if m[2] != "0" {
		v += "+" + m[2] + ".g" + m[3]
	}
	if err := Validate(v); err != nil {
		return "", fmt.Errorf("tag of %q in %s: %w", desc, root, err)
	}
	return v, nil
}

// semverRe is semantic versioning 2.0 (core, optional pre-release and build metadata).
var semverRe = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)` +
	`(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?` +
	`(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)

// Parts is a version split into its semantic-versioning parts.
type Parts struct {
	Core       string // "1.2.0"
	Prerelease string // "rc.1", "dev" or ""
	Metadata   string // "3.gabc1234" or ""
}

// Validate reports whether v is a semantic version the packagers can carry.
func Validate(v string) error {
	_, err := Split(v)
	return err
}

// Split parses a semantic version.
func Split(v string) (Parts, error) {
	m := semverRe.FindStringSubmatch(v)
	if m == nil {
		return Parts{}, fmt.Errorf("version %q is not a semantic version (MAJOR.MINOR.PATCH[-PRE][+META])", v)
	}
	return Parts{Core: m[1] + "." + m[2] + "." + m[3], Prerelease: m[4], Metadata: m[5]}, nil
}

func git(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("git %s in %s: %w: %s", strings.Join(args, " "), dir, err, strings.TrimSpace(stderr.String()))
		}
		return "", fmt.Errorf("git %s in %s: %w", strings.Join(args, " "), dir, err)
	}
	return strings.TrimSpace(string(out)), nil
}
