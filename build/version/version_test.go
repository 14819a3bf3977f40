package version

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// gitRepo makes a repository with one commit per entry of commitTimes and
// returns its path.
func gitRepo(t *testing.T, commitTimes ...string) string {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("git is required to build this project: %v", err)
	}
	dir := t.TempDir()
	run(t, dir, "", "init", "-q", "-b", "main")
	for i, ct := range commitTimes {
		if err := os.WriteFile(filepath.Join(dir, "f"), []byte{byte(i)}, 0o644); err != nil {
			t.Fatal(err)
		}
		run(t, dir, "", "add", "f")
		run(t, dir, ct, "commit", "-q", "-m", "c")
	}
	return dir
}

func run(t *testing.T, dir, date string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "tag.gpgSign=false", "-c", "commit.gpgSign=false"}, args...)...)
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_DATE="+date, "GIT_COMMITTER_DATE="+date)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestResolve(t *testing.T) {
	const t1, t2 = "1700000000 +0000", "1700000500 +0200"
	tests := []struct {
		name      string
		setup     func(t *testing.T, dir string)
		env       map[string]string
		version   string // exact, or a regexp when it starts with ^
		epoch     int64
		wantError string
	}{
		{name: "untagged", version: `^0\.0\.0-dev\+[0-9a-f]{7}$`, epoch: 1700000500},
		{name: "tag at HEAD", setup: func(t *testing.T, d string) { run(t, d, "", "tag", "v1.2.0") }, version: "1.2.0", epoch: 1700000500},
		{name: "lightweight tag without v", setup: func(t *testing.T, d string) { run(t, d, "", "tag", "2.0.0-rc.1") }, version: "2.0.0-rc.1", epoch: 1700000500},
		{name: "commits after tag", setup: func(t *testing.T, d string) { run(t, d, "", "tag", "v1.2.0", "HEAD~1") }, version: `^1\.2\.0\+1\.g[0-9a-f]{7}$`, epoch: 1700000500},
		{name: "env overrides", env: map[string]string{EnvVersion: "9.9.9", EnvSourceDateEpoch: "42"}, version: "9.9.9", epoch: 42},
		{name: "bad env version", env: map[string]string{EnvVersion: "v1"}, wantError: "not a semantic version"},
		{name: "bad epoch", env: map[string]string{EnvSourceDateEpoch: "yesterday"}, wantError: "SOURCE_DATE_EPOCH"},
		{name: "tag not semver", setup: func(t *testing.T, d string) { run(t, d, "", "tag", "release-one") }, wantError: "not a semantic version"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(EnvVersion, "")
			t.Setenv(EnvSourceDateEpoch, "")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			dir := gitRepo(t, t1, t2)
			if tc.setup != nil {
				tc.setup(t, dir)
			}
			info, err := Resolve(dir)
			if tc.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantError) {
					t.Fatalf("Resolve error = %v, want one containing %q", err, tc.wantError)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(tc.version, "^") {
				if !regexp.MustCompile(tc.version).MatchString(info.Version) {
					t.Errorf("Version = %q, want match of %s", info.Version, tc.version)
				}
			} else if info.Version != tc.version {
				t.Errorf("Version = %q, want %q", info.Version, tc.version)
			}
			if head := run(t, dir, "", "rev-parse", "HEAD"); info.Commit != head {
				t.Errorf("Commit = %q, want %q", info.Commit, head)
			}
			if strings.Contains(info.Version, "+") && !strings.Contains(info.Version, "+"+info.Commit[:7]) && !strings.Contains(info.Version, ".g"+info.Commit[:7]) {
				t.Errorf("Version %q does not name commit %s", info.Version, info.Commit)
			}
			if info.SourceDateEpoch != tc.epoch {
				t.Errorf("SourceDateEpoch = %d, want %d", info.SourceDateEpoch, tc.epoch)
			}
		})
	}
}

func TestResolveOutsideGit(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(EnvVersion, "")
	t.Setenv(EnvSourceDateEpoch, "")
	if _, err := Resolve(dir); err == nil || !strings.Contains(err.Error(), EnvVersion) {
		t.Fatalf("Resolve outside git = %v, want an error telling to set %s", err, EnvVersion)
	}
	t.Setenv(EnvVersion, "1.0.0")
	t.Setenv(EnvSourceDateEpoch, "1")
	info, err := Resolve(dir)
	if err != nil {
		t.Fatal(err)
	}
	if info != (Info{Version: "1.0.0", Commit: "unknown", SourceDateEpoch: 1}) {
		t.Errorf("Resolve = %+v", info)
	}
}

func TestSplit(t *testing.T) {
	tests := []struct {
		in   string
		want Parts
		bad  bool
	}{
		{in: "1.2.3", want: Parts{Core: "1.2.3"}},
		{in: "0.0.0-dev+abc1234", want: Parts{Core: "0.0.0", Prerelease: "dev", Metadata: "abc1234"}},
		{in: "1.0.0-rc.1", want: Parts{Core: "1.0.0", Prerelease: "rc.1"}},
		{in: "1.2.0+3.gabc1234", want: Parts{Core: "1.2.0", Metadata: "3.gabc1234"}},
		{in: "v1.2.3", bad: true},
		{in: "1.2", bad: true},
		{in: "01.2.3", bad: true},
		{in: "1.2.3 ", bad: true},
		{in: "1.2.3-", bad: true},
	}
	for _, tc := range tests {
		got, err := Split(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("Split(%q) = %+v, want error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Split(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}
