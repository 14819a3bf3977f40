package methods

import (
	"reflect"
	"testing"
)

func TestBlockMounts(t *testing.T) {
	all, err := parseMounts([]byte(fakeMountinfo))
	if err != nil {
		t.Fatal(err)
	}
	points := func(ms []mount) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.mountPoint)
		}
		return out
	}
	// fsinfo: every block-device file system, read-only media included,
	// the bind mount /srv/alice folded into /home, the hidden rootfs out.
	if got, want := points(blockMounts(all, false)), []string{"/", "/var", "/var/lib/db", "/home", "/media/cdrom", "/srv/ro", "/data", "/mnt/sp ace"}; !reflect.DeepEqual(got, want) {
		t.Errorf("blockMounts(all) = %q, want %q", got, want)
	}
	// freeze and trim: writable local ones only.
	if got, want := points(blockMounts(all, true)), []string{"/", "/var", "/var/lib/db", "/home", "/data", "/mnt/sp ace"}; !reflect.DeepEqual(got, want) {
		t.Errorf("blockMounts(freezable) = %q, want %q", got, want)
	}
	if m := all[len(all)-1]; m.mountPoint != "/mnt/sp ace" || m.major != 254 || m.minor != 6 || m.readOnly || m.fsType != "ext4" || m.source != "/dev/vde" {
		t.Errorf("last mount parsed as %+v", m)
	}
	if _, err := parseMounts([]byte("1 2 x:y / / rw - ext4 /dev/a rw\n")); err == nil {
		t.Error("bad major:minor accepted")
	}
}
