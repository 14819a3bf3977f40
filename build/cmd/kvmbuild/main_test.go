package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kvmmanager/guest-agent/build/launcher"
	"github.com/kvmmanager/guest-agent/build/testenv"
)

// TestMagefilesTargetsExist holds every launcher.Run target named in
// magefiles/ to a target of the builder, and every quick target of the
// launcher to one that writes a quick stamp.
func TestMagefilesTargetsExist(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(testenv.MustRoot(), "magefiles", "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no magefiles: %v", err)
	}
	re := regexp.MustCompile(`launcher\.Run\(ctx, "([^"]+)"\)`)
	seen := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			seen++
			if _, ok := targets[m[1]]; !ok {
				t.Errorf("%s runs builder target %q, which kvmbuild does not have", filepath.Base(f), m[1])
			}
		}
	}
	if seen < len(targets) {
		t.Errorf("magefiles run %d builder targets, kvmbuild has %d: %v", seen, len(targets), targetNames())
	}
	for _, q := range launcher.QuickTargets {
		if _, ok := targets[q]; !ok {
			t.Errorf("quick target %q is not a builder target", q)
		}
	}
}

func TestUnknownTargetIsNamed(t *testing.T) {
	err := run(context.Background(), "isoo")
	if err == nil || !strings.Contains(err.Error(), `"isoo"`) || !strings.Contains(err.Error(), "iso") {
		t.Errorf("err = %v, want one naming the target and the targets", err)
	}
}
