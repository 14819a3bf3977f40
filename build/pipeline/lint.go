package pipeline

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// ShellDirs are the directories whose shell scripts `go tool mage test`
// checks with shellcheck.
var ShellDirs = []string{"installers", "packaging/scripts", "packaging/openrc", ".ci"}

// ActionlintTool is the actionlint that checks .github/workflows: a tool
// dependency in go.mod (like mage), run with `go tool`, so it needs nothing
// installed and no network once the module cache is warm.
const ActionlintTool = "actionlint"

// Script is a shell script and the dialect shellcheck checks it as.
type Script struct {
	Path  string // relative to the repository root
	Shell string // "sh" or "bash"
}

// ShellScripts lists the scripts under ShellDirs: files with a shell
// shebang, and OpenRC files (#!/sbin/openrc-run and the conf.d fragment,
// both POSIX sh). A bash shebang selects bash, anything else sh.
func ShellScripts(root string) ([]Script, error) {
	var out []Script
	for _, d := range ShellDirs {
		err := filepath.WalkDir(filepath.Join(root, d), func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				if os.IsNotExist(err) {
					return nil
				}
				return err
			}
			if !e.Type().IsRegular() {
				return nil
			}
			first, err := firstLine(p)
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			switch {
			case strings.HasPrefix(first, "#!") && strings.Contains(first, "bash"):
				out = append(out, Script{Path: rel, Shell: "bash"})
			case strings.HasPrefix(first, "#!") && (strings.Contains(first, "sh") || strings.Contains(first, "openrc-run")):
				out = append(out, Script{Path: rel, Shell: "sh"})
			case strings.HasSuffix(p, ".confd") || strings.HasSuffix(p, ".sh"):
				out = append(out, Script{Path: rel, Shell: "sh"})
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("list shell scripts under %s: %w", filepath.Join(root, d), err)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

func firstLine(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", p, err)
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("read %s: %w", p, err)
	}
	return strings.TrimSpace(line), nil
}

// Shellcheck runs shellcheck on every script of ShellScripts, one call per
// dialect, and fails when it reports anything.
func Shellcheck(ctx context.Context, root string, out io.Writer) error {
	scripts, err := ShellScripts(root)
	if err != nil {
		return err
	}
	byShell := map[string][]string{}
	for _, s := range scripts {
		byShell[s.Shell] = append(byShell[s.Shell], s.Path)
	}
	for _, sh := range []string{"sh", "bash"} {
		files := byShell[sh]
		if len(files) == 0 {
			continue
		}
		fmt.Fprintf(out, "shellcheck -s %s: %s\n", sh, strings.Join(files, " "))
		cmd := exec.CommandContext(ctx, "shellcheck", append([]string{"-s", sh, "-x"}, files...)...)
		cmd.Dir = root
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("shellcheck -s %s found problems (or failed): %w", sh, err)
		}
	}
	return nil
}

// Actionlint checks .github/workflows with actionlint (which also runs
// shellcheck on run: blocks when shellcheck is on PATH).
func Actionlint(ctx context.Context, root string, out io.Writer) error {
	fmt.Fprintf(out, "go tool %s\n", ActionlintTool)
	cmd := exec.CommandContext(ctx, "go", "tool", ActionlintTool)
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("actionlint on %s/.github/workflows: %w", root, err)
	}
	return nil
}
