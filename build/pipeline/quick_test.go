package pipeline

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvmmanager/guest-agent/build/launcher"
	"github.com/kvmmanager/guest-agent/build/signing"
)

// TestQuickStampFollowsThePipeline builds the ISO as the builder does (a
// launcher snapshot first) in a copy of the module: the quick path then
// prints exactly what a no-op run of the pipeline prints; after an agent
// edit it steps aside, and the run that rebuilds makes it hold again.
func TestQuickStampFollowsThePipeline(t *testing.T) {
	t.Setenv("KVMMANAGER_VERSION", "1.2.3")
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	root := copyModule(t, "agent", "packaging", "installers")
	dist := filepath.Join(root, "dist")
	iso := func() string {
		t.Helper()
		snap, err := launcher.Take(root, "iso", os.Environ(), nil)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if _, err := ISO(context.Background(), Options{Root: root, Dist: dist, Out: &out, Quick: snap}); err != nil {
			t.Fatalf("%v\n%s", err, out.String())
		}
		return out.String()
	}
	quick := func() (bool, string) {
		t.Helper()
		var out bytes.Buffer
		ok, err := launcher.UpToDate(root, "iso", &out)
		if err != nil {
			t.Fatal(err)
		}
		return ok, out.String()
	}
	iso()
	noop := iso()
	if strings.Count(noop, "up to date") != 13 {
		t.Fatalf("the second run is not a no-op of 13 artifacts:\n%s", noop)
	}
	if ok, out := quick(); !ok || out != noop {
		t.Fatalf("quick path: up to date %v, printed\n%s\nwant the pipeline's no-op lines\n%s", ok, out, noop)
	}

	appendComment(t, filepath.Join(root, "agent/methods/agent.go"))
	if ok, _ := quick(); ok {
		t.Fatal("the quick path holds after an agent edit")
	}
	iso()
	if ok, out := quick(); !ok || out != noop {
		t.Errorf("after the rebuild: up to date %v, printed\n%s\nwant\n%s", ok, out, noop)
	}

	// A run that fails leaves no stamp behind.
	if err := os.Rename(filepath.Join(root, "installers"), filepath.Join(root, "installers.away")); err != nil {
		t.Fatal(err)
	}
	snap, err := launcher.Take(root, "iso", os.Environ(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ISO(context.Background(), Options{Root: root, Dist: dist, Quick: snap}); err == nil {
		t.Fatal("an ISO without installers/ was built")
	}
	if _, err := os.Stat(launcher.QuickStampPath(dist, "iso")); !os.IsNotExist(err) {
		t.Errorf("a failed run left its quick stamp: %v", err)
	}
}

// TestSigningEnvironmentHasNoQuickStamp holds build/launcher's list of the
// signing variables (which it may not hash) to build/signing's.
func TestSigningEnvironmentHasNoQuickStamp(t *testing.T) {
	for _, name := range []string{signing.EnvPGPKey, signing.EnvPGPKeyFile, signing.EnvPGPPassphrase,
		signing.EnvAPKKey, signing.EnvAPKKeyFile, signing.EnvAPKKeyName} {
		covered := false
		for _, p := range launcher.SecretEnvPrefixes {
			covered = covered || strings.HasPrefix(name, p)
		}
		if !covered {
			t.Errorf("%s is not under launcher.SecretEnvPrefixes %v", name, launcher.SecretEnvPrefixes)
		}
	}
}
