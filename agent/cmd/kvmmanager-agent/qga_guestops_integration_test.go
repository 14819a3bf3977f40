//go:build !windows

package main

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/kvmmanager/guest-agent/agent/qga/qapi"
)

// TestQGAGuestOpsIntegration compares the guest-operation commands of the
// agent process with Debian's qemu-ga on this machine: the same disks, file
// systems (PCI address, bus, unit, device), time zone, users, freeze state
// and counters. Only commands that change nothing are sent (fstrim, freeze
// and set-time with a valid time would act on the machine, and thaw
// would thaw any file system another test froze). qemu-ga runs
// without udev here, so its disks have no serial: serials are left out of
// the comparison.
func TestQGAGuestOpsIntegration(t *testing.T) {
	if _, err := exec.LookPath("qemu-ga"); err != nil {
		t.Skip("qemu-ga not installed (TestQGAIntegration reports it loudly)")
	}
	ours, ref := startAgent(t), startQemuGA(t)
	both := func(req string) (reply, reply) {
		t.Helper()
		return parseReply(t, "ours", ours.call(req)), parseReply(t, "qemu-ga", ref.call(req))
	}
	exact := []string{
		`{"execute":"guest-get-timezone","id":1}`,
		`{"execute":"guest-get-users","id":2}`,
		`{"execute":"guest-fsfreeze-status","id":3}`,
		`{"execute":"guest-set-time","arguments":{"time":-5},"id":5}`,
		`{"execute":"guest-set-user-password","arguments":{"username":"root","password":"!!!","crypted":false}}`,
		`{"execute":"guest-ssh-get-authorized-keys","arguments":{"username":1}}`,
		`{"execute":"guest-fsfreeze-freeze-list","arguments":{"mountpoints":"/"}}`,
	}
	for _, req := range exact {
		a, b := both(req)
		sameErr := (a.Error == nil) == (b.Error == nil) && (a.Error == nil || *a.Error == *b.Error)
		if !sameErr || string(a.ID) != string(b.ID) || !reflect.DeepEqual(normalize(t, a.Return), normalize(t, b.Return)) {
			t.Errorf("%s:\n ours    %s %+v\n qemu-ga %s %+v", req, a.Return, a.Error, b.Return, b.Error)
		}
	}

	// File systems: same list, sizes and disk addresses.
	a, b := both(`{"execute":"guest-get-fsinfo"}`)
	var fa, fb []qapi.GuestFilesystemInfo
	decodeBoth(t, a, b, &fa, &fb, []qapi.GuestFilesystemInfo{})
	strip := func(fs []qapi.GuestFilesystemInfo) []qapi.GuestFilesystemInfo {
		for i := range fs {
			fs[i].UsedBytes = nil // changes between the two calls
			for j := range fs[i].Disk {
				fs[i].Disk[j].Serial = ""
			}
		}
		return fs
	}
	if !reflect.DeepEqual(strip(fa), strip(fb)) {
		t.Errorf("guest-get-fsinfo:\n ours    %s\n qemu-ga %s", a.Return, b.Return)
	}

	// Disks: same devices, partitions, aliases and addresses.
	a, b = both(`{"execute":"guest-get-disks"}`)
	var da, db []qapi.GuestDiskInfo
	decodeBoth(t, a, b, &da, &db, []qapi.GuestDiskInfo{})
	norm := func(ds []qapi.GuestDiskInfo) []qapi.GuestDiskInfo {
		for i := range ds {
			if len(ds[i].Dependencies) == 0 {
				ds[i].Dependencies = nil
			}
			if ds[i].Address != nil {
				ds[i].Address.Serial = ""
			}
		}
		slices.SortFunc(ds, func(x, y qapi.GuestDiskInfo) int { return cmpString(x.Name, y.Name) })
		return ds
	}
	if !reflect.DeepEqual(norm(da), norm(db)) {
		t.Errorf("guest-get-disks:\n ours    %s\n qemu-ga %s", a.Return, b.Return)
	}

	// Counters move: the same CPUs and disks, each field present in both.
	a, b = both(`{"execute":"guest-get-cpustats"}`)
	var ca, cb []map[string]any
	decodeBoth(t, a, b, &ca, &cb, []qapi.GuestCpuStats{})
	if len(ca) != len(cb) {
		t.Errorf("cpustats: %d CPUs, qemu-ga %d", len(ca), len(cb))
	}
	for i := range min(len(ca), len(cb)) {
		if !reflect.DeepEqual(keys(ca[i]), keys(cb[i])) || ca[i]["cpu"] != cb[i]["cpu"] {
			t.Errorf("cpustats[%d]: ours %v, qemu-ga %v", i, ca[i], cb[i])
		}
	}
	a, b = both(`{"execute":"guest-get-diskstats"}`)
	var sa, sb []qapi.GuestDiskStatsInfo
	decodeBoth(t, a, b, &sa, &sb, []qapi.GuestDiskStatsInfo{})
	names := func(s []qapi.GuestDiskStatsInfo) []string {
		var out []string
		for _, d := range s {
			out = append(out, fmt.Sprintf("%s %d:%d", d.Name, d.Major, d.Minor))
		}
		return out
	}
	if !reflect.DeepEqual(names(sa), names(sb)) {
		t.Errorf("diskstats devices: ours %v, qemu-ga %v", names(sa), names(sb))
	}

	a, b = both(`{"execute":"guest-get-time"}`)
	var ta, tb int64
	decodeBoth(t, a, b, &ta, &tb, int64(0))
	if d := time.Duration(ta - tb); d < -time.Minute || d > time.Minute {
		t.Errorf("guest-get-time: ours %d, qemu-ga %d", ta, tb)
	}
}

func decodeBoth(t *testing.T, a, b reply, va, vb, shape any) {
	t.Helper()
	if a.Error != nil || b.Error != nil {
		t.Fatalf("errors: ours %+v, qemu-ga %+v", a.Error, b.Error)
	}
	if err := qapi.CheckShape(a.Return, shape); err != nil {
		t.Errorf("our reply does not fit the schema: %v", err)
	}
	if err := json.Unmarshal(a.Return, va); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b.Return, vb); err != nil {
		t.Fatal(err)
	}
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
