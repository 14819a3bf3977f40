//go:build !windows

package qga

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvmmanager/guest-agent/agent/config"
	"github.com/kvmmanager/guest-agent/build/testenv"
)

// guestRoot builds a host root with the files of the guest-information
// commands.
func guestRoot(t *testing.T, extra map[string]string) string {
	t.Helper()
	root := t.TempDir()
	utmp := make([]byte, 2*384)
	for i, u := range []struct {
		name string
		sec  uint32
	}{{"alice", 1700000000}, {"bob", 1700000100}} {
		r := utmp[i*384:]
		binary.LittleEndian.PutUint16(r, 7)
		copy(r[44:], u.name)
		binary.LittleEndian.PutUint32(r[340:], u.sec)
		binary.LittleEndian.PutUint32(r[344:], 500000)
	}
	files := map[string]string{
		"var/run/utmp":        string(utmp),
		"proc/loadavg":        "0.50 0.25 0.10 2/300 4000\n",
		"proc/stat":           "cpu  1 2 3 4 5 6 7 8 9 10\ncpu0 100 200 300 400 500 600 700 800 900 1000\n",
		"proc/diskstats":      " 254 0 vda 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17\n",
		"proc/self/mountinfo": "20 1 0:20 / /proc rw - proc proc rw\n21 1 0:21 / /run rw - tmpfs tmpfs rw\n",
		"etc/passwd":          "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/nonexistent:/bin/sh\n",
		"sys/devices/system/clocksource/clocksource0/current_clocksource": "kvm-clock\n",
	}
	for k, v := range extra {
		files[k] = v
	}
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestGuestOpsCommands(t *testing.T) {
	allow := func(c *config.Config) { c.AllowAccountChanges = true }
	tests := []struct {
		name string
		edit func(*config.Config)
		in   string
		want string
	}{
		{"users", nil, `{"execute":"guest-get-users"}`,
			`{"return":[{"user":"alice","login-time":1700000000.5},{"user":"bob","login-time":1700000100.5}]}`},
		{"timezone without /etc/localtime", nil, `{"execute":"guest-get-timezone"}`, `{"return":{"zone":"UTC","offset":0}}`},
		{"load", nil, `{"execute":"guest-get-load"}`, `{"return":{"load1":0.5,"load5":0.25,"load15":0.1}}`},
		{"cpustats", nil, `{"execute":"guest-get-cpustats"}`,
			`{"return":[{"type":"linux","cpu":0,"user":1000,"nice":2000,"system":3000,"idle":4000,"iowait":5000,"irq":6000,"softirq":7000,"steal":8000,"guest":9000,"guestnice":10000}]}`},
		{"diskstats", nil, `{"execute":"guest-get-diskstats"}`,
			`{"return":[{"name":"vda","major":254,"minor":0,"stats":{"read-sectors":3,"read-ios":1,"read-merges":2,"write-sectors":7,"write-ios":5,"write-merges":6,"discard-sectors":14,"discard-ios":12,"discard-merges":13,"flush-ios":16,"read-ticks":4,"write-ticks":8,"discard-ticks":15,"flush-ticks":17,"ios-pgr":9,"total-ticks":10,"weight-ticks":11}}]}`},
		{"set-time argument type", nil, `{"execute":"guest-set-time","arguments":{"time":"now"}}`,
			`{"error":{"class":"GenericError","desc":"Invalid parameter type for 'time', expected: integer"}}`},
		{"set-time before the epoch", nil, `{"execute":"guest-set-time","arguments":{"time":-5}}`,
			`{"error":{"class":"GenericError","desc":"Failed to set time to guest: Invalid argument"}}`},
		{"fsfreeze-status", nil, `{"execute":"guest-fsfreeze-status"}`, `{"return":"thawed"}`},
		{"freeze-list of nothing freezable", nil, `{"execute":"guest-fsfreeze-freeze-list","arguments":{"mountpoints":["/run","/nope"]}}`, `{"return":0}`},
		{"freeze with nothing freezable", nil, `{"execute":"guest-fsfreeze-freeze"}`, `{"return":0}`},
		{"thaw when thawed", nil, `{"execute":"guest-fsfreeze-thaw"}`, `{"return":0}`},
		{"fstrim with nothing to trim", nil, `{"execute":"guest-fstrim","arguments":{"minimum":4096}}`, `{"return":{"paths":[]}}`},
		{"password: bad base64", allow, `{"execute":"guest-set-user-password","arguments":{"username":"alice","password":"!!!","crypted":false}}`,
			`{"error":{"class":"GenericError","desc":"Base64 data contains invalid characters"}}`},
		{"password: colon in name", allow, `{"execute":"guest-set-user-password","arguments":{"username":"a:b","password":"eA==","crypted":false}}`,
			`{"error":{"class":"GenericError","desc":"forbidden characters in username"}}`},
		{"password: newline in the password", allow, `{"execute":"guest-set-user-password","arguments":{"username":"alice","password":"eApyb290","crypted":false}}`,
			`{"error":{"class":"GenericError","desc":"forbidden characters in raw password"}}`},
		{"password: crypted is required", allow, `{"execute":"guest-set-user-password","arguments":{"username":"alice","password":"eA=="}}`,
			`{"error":{"class":"GenericError","desc":"Parameter 'crypted' is missing"}}`},
		{"password: disabled by default", nil, `{"execute":"guest-set-user-password","arguments":{"username":"alice","password":"eA==","crypted":false}}`,
			`{"error":{"class":"GenericError","desc":"account changes are disabled on this guest (allow_account_changes is false in the agent's configuration)"}}`},
		{"ssh keys: unknown user", nil, `{"execute":"guest-ssh-get-authorized-keys","arguments":{"username":"nosuch"}}`,
			`{"error":{"class":"GenericError","desc":"failed to lookup user 'nosuch': no such user in ROOT/etc/passwd"}}`},
		{"ssh keys: invalid key", allow, `{"execute":"guest-ssh-add-authorized-keys","arguments":{"username":"alice","keys":["#x"]}}`,
			`{"error":{"class":"GenericError","desc":"invalid OpenSSH public key: '#x': empty or a comment"}}`},
		{"ssh keys: add disabled by default", nil, `{"execute":"guest-ssh-add-authorized-keys","arguments":{"username":"alice","keys":["#x"]}}`,
			`{"error":{"class":"GenericError","desc":"account changes are disabled on this guest (allow_account_changes is false in the agent's configuration)"}}`},
		{"ssh keys: remove needs keys", allow, `{"execute":"guest-ssh-remove-authorized-keys","arguments":{"username":"alice"}}`,
			`{"error":{"class":"GenericError","desc":"Parameter 'keys' is missing"}}`},
		{"ssh keys: no home, no keys", nil, `{"execute":"guest-ssh-get-authorized-keys","arguments":{"username":"alice"}}`,
			`{"return":{"keys":[]}}`},
		{"disabled by its protocol 1.1 name", func(c *config.Config) { c.DisabledMethods = []string{"get_users"} }, `{"execute":"guest-get-users"}`,
			`{"error":{"class":"CommandNotFound","desc":"Command guest-get-users has been disabled"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			if tt.edit != nil {
				tt.edit(cfg)
			}
			root := guestRoot(t, nil)
			d := newTestDialect(t, cfg, Options{HostRoot: root})
			got := strings.TrimSuffix(serve(t, d, tt.in), "\n")
			want := strings.ReplaceAll(tt.want, "ROOT", root)
			if got != want {
				t.Errorf("%s\n got %s\nwant %s", tt.in, got, want)
			}
		})
	}
}

func TestGuestGetTime(t *testing.T) {
	d := newTestDialect(t, nil, Options{HostRoot: guestRoot(t, nil)})
	got := serve(t, d, `{"execute":"guest-get-time"}`)
	var ns int64
	if _, err := fmt.Sscanf(got, `{"return":%d}`, &ns); err != nil || ns < 1_700_000_000_000_000_000 {
		t.Errorf("guest-get-time = %q", got)
	}
}

func TestGuestFsinfoAndDisks(t *testing.T) {
	root := guestRoot(t, map[string]string{
		"proc/self/mountinfo": "22 1 254:1 / /nonexistent-kvm-test rw - ext4 /dev/vda1 rw\n",
		"sys/devices/pci0000:00/0000:00:04.0/virtio1/block/vda/size":           "100\n",
		"sys/devices/pci0000:00/0000:00:04.0/virtio1/block/vda/serial":         "S1\n",
		"sys/devices/pci0000:00/0000:00:04.0/virtio1/block/vda/vda1/partition": "1\n",
		"sys/bus/pci/drivers/virtio-pci/bind":                                  "",
	})
	for link, target := range map[string]string{
		"sys/devices/pci0000:00/0000:00:04.0/driver": "../../../bus/pci/drivers/virtio-pci",
		"sys/dev/block/254:1":                        "../../devices/pci0000:00/0000:00:04.0/virtio1/block/vda/vda1",
		"sys/block/vda":                              "../devices/pci0000:00/0000:00:04.0/virtio1/block/vda",
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, link)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	d := newTestDialect(t, nil, Options{HostRoot: root})
	addr := `{"pci-controller":{"domain":0,"bus":0,"slot":4,"function":0},"bus-type":"virtio","bus":0,"target":0,"unit":0,"serial":"S1","dev":"/dev/%s"}`
	got := serve(t, d, `{"execute":"guest-get-fsinfo"}`, `{"execute":"guest-get-disks"}`)
	want := `{"return":[{"name":"vda1","mountpoint":"/nonexistent-kvm-test","type":"ext4","disk":[` + fmt.Sprintf(addr, "vda1") + `]}]}` + "\n" +
		`{"return":[{"name":"/dev/vda","partition":false,"address":` + fmt.Sprintf(addr, "vda") + `},{"name":"/dev/vda1","partition":true,"dependencies":["/dev/vda"]}]}` + "\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// TestGuestFsfreezeRealExt4 freezes a loop-mounted ext4 through QGA. The
// host root's mountinfo lists only that mount, so nothing else is touched.
func TestGuestFsfreezeRealExt4(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedCommands(t, "mkfs.ext4", "mount", "umount")
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img, "16M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		testenv.Unavailable(t, "cannot loop-mount an ext4 image here: %v: %s", err, out)
	}
	d := newTestDialect(t, nil, Options{HostRoot: guestRoot(t, map[string]string{
		"proc/self/mountinfo": fmt.Sprintf("40 1 7:99 / %s rw,relatime - ext4 /dev/loop99 rw\n", mnt),
	})})
	t.Cleanup(func() {
		serve(t, d, `{"execute":"guest-fsfreeze-thaw"}`)
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount: %v: %s", err, out)
		}
	})
	got := serve(t, d,
		`{"execute":"guest-fsfreeze-freeze","id":1}`,
		`{"execute":"guest-fsfreeze-status","id":2}`,
		`{"execute":"guest-get-users","id":3}`,
		`{"execute":"guest-fsfreeze-freeze-list","arguments":{"mountpoints":["`+mnt+`"]},"id":4}`,
		`{"execute":"guest-file-open","arguments":{"path":"`+mnt+`/x","mode":"w"},"id":41}`,
		`{"execute":"guest-exec","arguments":{"path":"/bin/true"},"id":42}`,
		`{"execute":"guest-ping","id":5}`,
		`{"execute":"guest-fsfreeze-thaw","id":6}`,
		`{"execute":"guest-fsfreeze-status","id":7}`,
		`{"execute":"guest-fsfreeze-thaw","id":8}`)
	want := `{"return":1,"id":1}` + "\n" +
		`{"return":"frozen","id":2}` + "\n" +
		`{"error":{"class":"CommandNotFound","desc":"Command guest-get-users has been disabled: the agent is in frozen state"},"id":3}` + "\n" +
		`{"error":{"class":"CommandNotFound","desc":"Command guest-fsfreeze-freeze-list has been disabled: the agent is in frozen state"},"id":4}` + "\n" +
		`{"error":{"class":"CommandNotFound","desc":"Command guest-file-open has been disabled: the agent is in frozen state"},"id":41}` + "\n" +
		`{"error":{"class":"CommandNotFound","desc":"Command guest-exec has been disabled: the agent is in frozen state"},"id":42}` + "\n" +
		`{"return":{},"id":5}` + "\n" +
		`{"return":1,"id":6}` + "\n" +
		`{"return":"thawed","id":7}` + "\n" +
		`{"return":0,"id":8}` + "\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if err := os.WriteFile(filepath.Join(mnt, "after"), []byte("x"), 0o644); err != nil {
		t.Errorf("write after thaw: %v", err)
	}
}
