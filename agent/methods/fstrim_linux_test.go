package methods

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func TestFstrim(t *testing.T) {
	s, ffs := newFreezeService(t, fakeMountinfo, nil)
	ffs.trimEr["/data"] = unix.EOPNOTSUPP
	ffs.trimEr["/home"] = unix.ENOTTY
	ffs.trimEr["/var"] = unix.EIO
	ffs.trimEr["/var/lib/db"] = &os.PathError{Op: "open", Path: "/var/lib/db", Err: unix.EACCES}
	got, err := s.Fstrim(context.Background(), 65536)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(got)
	want := `[{"path":"/mnt/sp ace","minimum":65536,"trimmed":45056},` +
		`{"path":"/data","error":"trim not supported"},` +
		`{"path":"/home","error":"trim not supported"},` +
		`{"path":"/var/lib/db","error":"failed to open: Permission denied"},` +
		`{"path":"/var","error":"failed to trim: Input/output error"},` +
		`{"path":"/","minimum":65536,"trimmed":4096}]`
	if string(b) != want {
		t.Errorf("Fstrim =\n%s\nwant\n%s", b, want)
	}
	if _, err := s.FsfreezeFreeze(context.Background(), []string{"/var"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Fstrim(context.Background(), 0); !errors.Is(err, ErrFrozen) {
		t.Errorf("fstrim while frozen: err = %v, want ErrFrozen", err)
	}
}

func TestFstrimRealExt4(t *testing.T) {
	mnt := realFS(t)
	s := newService(t, nil)
	s.guest.fsIoctl = onlyUnder(mnt)
	got, err := s.Fstrim(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range got {
		if r.Path != mnt {
			continue
		}
		// A loop device discards (punches holes in the image).
		if r.Error != "" || r.Trimmed == nil || *r.Trimmed == 0 || r.Minimum == nil {
			t.Errorf("fstrim of %s = %+v", mnt, r)
		}
		return
	}
	t.Errorf("fstrim did not list %s: %+v", mnt, got)
}
