package distro

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers the rpm packager
)

// rpmDBPath is where the rpm guest keeps its database (Rocky's place; the
// image's macros file points Debian's rpm there).
const rpmDBPath = "/var/lib/rpm"

// RecordRPMProvides records in the rpm database dbpath of the Debian tree
// root a package that provides caps and holds no files, as a real rpm
// system's base packages do (Rocky's bash provides /bin/sh): the files are
// there, installed by dpkg, but rpm resolves a package's requirements
// against its own database only. Needs rpm on the host.
func RecordRPMProvides(ctx context.Context, log io.Writer, tree, dbpath string, caps []string) error {
	dir, err := os.MkdirTemp("", "kvmtest-rpm-base-")
	if err != nil {
		return fmt.Errorf("create stub rpm directory: %w", err)
	}
	defer os.RemoveAll(dir)
	info := nfpm.WithDefaults(&nfpm.Info{
		Name: "kvmtest-base", Arch: "amd64", Platform: "linux", Version: "1.0", Release: "1",
		Maintainer:  "build/distro <test@kvmmanager.invalid>",
		Description: "what the Debian base system provides, recorded for rpm",
		MTime:       time.Unix(0, 0).UTC(),
		Overridables: nfpm.Overridables{
			Provides: caps,
		},
	})
	if err := nfpm.PrepareForPackager(info, "rpm"); err != nil {
		return fmt.Errorf("stub rpm: %w", err)
	}
	pk, err := nfpm.Get("rpm")
	if err != nil {
		return fmt.Errorf("stub rpm: %w", err)
	}
	p := filepath.Join(dir, "kvmtest-base.rpm")
	f, err := os.Create(p)
	if err != nil {
		return fmt.Errorf("create %s: %w", p, err)
	}
	if err := pk.Package(info, f); err != nil {
		f.Close()
		return fmt.Errorf("build %s: %w", p, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return run(ctx, log, "rpm", "--root", tree, "--dbpath", dbpath, "-i", "--justdb", "--nodeps", "--noscripts", p)
}
