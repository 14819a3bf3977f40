package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"
)

// isoMagic is the ISO 9660 primary volume descriptor's identifier, at
// isoMagicOffset.
const (
	isoMagic       = "CD001"
	isoMagicOffset = 0x8001
)

func setupISO(a *app, _ *pflag.FlagSet) action {
	return func(_ context.Context, args []string) error {
		if args[0] != "install" {
			return usagef("unknown iso subcommand %q (want: iso install [PATH])", args[0])
		}
		src := isoName
		if len(args) == 2 {
			src = args[1]
		}
		dst := filepath.Join(a.imagesDir, isoName)
		if err := installISO(src, dst); err != nil {
			return &localError{err}
		}
		fmt.Fprintf(a.stdout, "installed %s as %s\n", src, dst)
		return nil
	}
}

// installISO copies the ISO image src to dst (mode 0644) through a
// temporary file in dst's directory renamed over it: dst is either the old
// file or the complete new one.
func installISO(src, dst string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("iso install: %w", err)
	}
	defer in.Close()
	magic := make([]byte, len(isoMagic))
	if _, err := in.ReadAt(magic, isoMagicOffset); err != nil || string(magic) != isoMagic {
		return fmt.Errorf("iso install: %s is not an ISO 9660 image", src)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*")
	if err != nil {
		return fmt.Errorf("iso install: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := io.Copy(tmp, in); err != nil {
		return fmt.Errorf("iso install: copy %s to %s: %w", src, tmp.Name(), err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("iso install: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("iso install: sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("iso install: close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("iso install: %w", err)
	}
	return nil
}
