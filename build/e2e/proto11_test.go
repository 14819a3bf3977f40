//go:build vmtest

package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvmmanager/guest-agent/agent/client"
	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// Protocol 1.1 checks. They run in the boot of each architecture that has
// the test config (initramfs.TestConfigFlag: allow_account_changes,
// fsfreeze_timeout_seconds 5) and the ext4 disk on /mnt/data: the
// link=true boots.
func init() {
	i := slices.IndexFunc(checks, func(c check) bool { return c.name == "reconnect_cycles" })
	checks = slices.Insert(checks, i,
		check{name: "p11_big_file_chunks", run: checkBigFile, linkOnly: true},
		check{name: "p11_exec_stream_40s", run: checkExecStream, linkOnly: true},
		check{name: "p11_exec_stdin_cat", run: checkExecStdin, linkOnly: true},
		check{name: "p11_freeze_blocks_write", run: checkFreeze, linkOnly: true},
		check{name: "p11_set_time", run: checkSetTime, linkOnly: true},
		check{name: "p11_ssh_keys", run: checkSSHKeys, linkOnly: true},
		check{name: "p11_password", run: checkPassword, linkOnly: true},
	)
}

// checkBigFile: 25 MiB, more than twice max_file_size_bytes, written and
// read back in chunks; the agent verifies the sha256 at the commit, and the
// copy read back has it too.
func checkBigFile(ctx context.Context, t *testing.T, m *machine) {
	data := make([]byte, 25<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < len(data); i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < len(data); j++ {
			data[i+j] = byte(v >> (8 * j))
		}
	}
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])
	const path = "/tmp/big.bin"
	start := time.Now()
	n, got, err := m.client.Upload(ctx, path, bytes.NewReader(data), client.UploadOptions{})
	if err != nil || n != int64(len(data)) || got != want {
		t.Fatalf("upload: %d bytes, sha256 %s, %v; want %d %s", n, got, err, len(data), want)
	}
	up := time.Since(start)
	st, err := m.client.FileStat(ctx, path, true)
	if err != nil || st.SizeBytes != int64(len(data)) || st.SHA256 != want {
		t.Fatalf("file_stat: %+v %v", st, err)
	}
	var back bytes.Buffer
	start = time.Now()
	n, got, err = m.client.Download(ctx, path, &back, 0, nil)
	if err != nil || n != int64(len(data)) || got != want || !bytes.Equal(back.Bytes(), data) {
		t.Fatalf("download: %d bytes, sha256 %s, %v", n, got, err)
	}
	t.Logf("25 MiB: upload %s, download %s (chunks of 4 MiB, sha256 %s…)", up.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), want[:12])
	exec(ctx, t, m, "rm", "-f", path)
}

// checkExecStream: a 40 s command (longer than command_timeout_seconds)
// started with exec_start and followed to its exit; its output arrives
// while it runs, not at the end.
func checkExecStream(ctx context.Context, t *testing.T, m *machine) {
	timeout := 75
	r, err := m.client.ExecStart(ctx, protocol.ExecStartParams{Command: "sh",
		Args: []string{"-c", "i=1; while [ $i -le 40 ]; do echo tick $i; i=$((i+1)); sleep 1; done; echo done >&2; exit 5"}, TimeoutSeconds: &timeout})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	w := &timedWriter{start: start}
	var errb bytes.Buffer
	st, err := m.client.ExecFollow(ctx, r.ID, w, &errb, nil)
	if err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for i := 1; i <= 40; i++ {
		want.WriteString("tick " + strconv.Itoa(i) + "\n")
	}
	if w.buf.String() != want.String() || errb.String() != "done\n" || st.ExitCode == nil || *st.ExitCode != 5 {
		t.Fatalf("followed: stdout %q stderr %q status %+v", w.buf.String(), errb.String(), st)
	}
	// Streamed: a first piece long before the end, and many pieces.
	if len(w.at) < 10 || w.at[0] > 20*time.Second {
		t.Errorf("output came in %d pieces, the first after %s: not streamed", len(w.at), w.at[0])
	}
	t.Logf("40 s command followed: %d pieces, first after %s, exit after %s", len(w.at), w.at[0].Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

type timedWriter struct {
	start time.Time
	buf   bytes.Buffer
	at    []time.Duration
}

func (w *timedWriter) Write(p []byte) (int, error) {
	w.at = append(w.at, time.Since(w.start))
	return w.buf.Write(p)
}

// checkExecStdin: stdin fed to cat comes back, binary intact.
func checkExecStdin(ctx context.Context, t *testing.T, m *machine) {
	in := "line one\nzweite Zeile ü\n\x00\x01\xff end"
	enc := base64.StdEncoding.EncodeToString([]byte(in))
	r, err := m.client.ExecStart(ctx, protocol.ExecStartParams{Command: "cat", Stdin: &enc, StdinEncoding: protocol.EncodingBase64})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	st, err := m.client.ExecFollow(ctx, r.ID, &out, nil, nil)
	if err != nil || out.String() != in || st.ExitCode == nil || *st.ExitCode != 0 {
		t.Fatalf("cat: %q %+v %v", out.String(), st, err)
	}
}

// checkFreeze: while /mnt/data (ext4 on /dev/vda) is frozen a write there
// waits; thaw lets it finish. Frozen again and not thawed, the agent thaws
// by itself after fsfreeze_timeout_seconds (5 in the test config).
func checkFreeze(ctx context.Context, t *testing.T, m *machine) {
	fr, err := m.client.FsfreezeFreeze(ctx, "/mnt/data")
	if err != nil || fr.Frozen != 1 || !slices.Contains(fr.Mountpoints, "/mnt/data") {
		t.Fatalf("freeze: %+v %v", fr, err)
	}
	thawed := false
	defer func() {
		if !thawed {
			_, _ = m.client.FsfreezeThaw(context.WithoutCancel(ctx))
		}
	}()
	if st, err := m.client.FsfreezeStatus(ctx); err != nil || st.Status != protocol.FsfreezeFrozen {
		t.Fatalf("status while frozen: %+v %v", st, err)
	}
	writer := func() int64 {
		r, err := m.client.ExecStart(ctx, protocol.ExecStartParams{Command: "sh", Args: []string{"-c", "echo written > /mnt/data/f; sync /mnt/data/f 2>/dev/null || sync; echo ok"}})
		if err != nil {
			t.Fatal(err)
		}
		return r.ID
	}
	id := writer()
	// The writer is still blocked after 3 s of waiting for news.
	st, err := m.client.ExecStatus(ctx, protocol.ExecStatusParams{ID: id, WaitSeconds: 3})
	if err != nil || !st.Running || st.Stdout.Total != 0 {
		t.Fatalf("write on a frozen file system did not wait: %+v %v", st, err)
	}
	if th, err := m.client.FsfreezeThaw(ctx); err != nil || th.Thawed != 1 {
		t.Fatalf("thaw: %+v %v", th, err)
	}
	thawed = true
	var out bytes.Buffer
	if fst, err := m.client.ExecFollow(ctx, id, &out, nil, nil); err != nil || out.String() != "ok\n" || *fst.ExitCode != 0 {
		t.Fatalf("write after thaw: %q %+v %v", out.String(), fst, err)
	}

	// Auto-thaw.
	if _, err := m.client.FsfreezeFreeze(ctx); err != nil {
		t.Fatalf("freeze all: %v", err)
	}
	thawed = false
	start := time.Now()
	id = writer()
	out.Reset()
	if fst, err := m.client.ExecFollow(ctx, id, &out, nil, nil); err != nil || out.String() != "ok\n" || *fst.ExitCode != 0 {
		t.Fatalf("write during the freeze: %q %+v %v", out.String(), fst, err)
	}
	waited := time.Since(start)
	st2, err := m.client.FsfreezeStatus(ctx)
	if err != nil || st2.Status != protocol.FsfreezeThawed {
		t.Fatalf("status after the bound: %+v %v", st2, err)
	}
	thawed = true
	if waited < (testFreezeBound-1)*time.Second {
		t.Errorf("the write finished after %s, before the %ds auto-thaw", waited, testFreezeBound)
	}
	t.Logf("auto-thaw released the write after %s (bound %ds)", waited.Round(time.Millisecond), testFreezeBound)
}

// checkSetTime: set_time moves the guest clock; it is set back after.
func checkSetTime(ctx context.Context, t *testing.T, m *machine) {
	target := time.Now().Add(3 * time.Hour).UnixNano()
	r, err := m.client.SetTime(ctx, &target)
	if err != nil || r.Source != "request" {
		t.Fatalf("set_time: %+v %v", r, err)
	}
	defer func() {
		now := time.Now().UnixNano()
		if _, err := m.client.SetTime(context.WithoutCancel(ctx), &now); err != nil {
			t.Errorf("set the clock back: %v", err)
		}
	}()
	g, err := m.client.GetTime(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Duration(g.TimeNs - target); d < 0 || d > time.Minute {
		t.Fatalf("guest clock %s after set_time to %s", time.Unix(0, g.TimeNs).UTC(), time.Unix(0, target).UTC())
	}
	out := exec(ctx, t, m, "date", "-u", "+%s")
	if secs, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64); err != nil || secs < target/1e9 || secs > target/1e9+60 {
		t.Errorf("date in the guest says %q, want about %d", out, target/1e9)
	}
	// QEMU gives both arches an RTC (rtc-cmos, pl031): set_time writes it,
	// and the kernel reads it back in /sys/class/rtc.
	if !r.RTCUpdated {
		t.Errorf("set_time did not update the guest's RTC")
	}
	rtc := strings.TrimSpace(exec(ctx, t, m, "cat", "/sys/class/rtc/rtc0/since_epoch"))
	if secs, err := strconv.ParseInt(rtc, 10, 64); err != nil || secs < target/1e9-1 || secs > target/1e9+60 {
		t.Errorf("the guest's RTC says %q seconds since the epoch, want about %d", rtc, target/1e9)
	}
	// Without a time, set_time sets the clock from the RTC (read back
	// through the agent's own RTC reader).
	if r, err := m.client.SetTime(ctx, nil); err != nil || r.Source != "rtc" {
		t.Errorf("set_time from the RTC: %+v %v", r, err)
	} else if g, err := m.client.GetTime(ctx); err != nil || time.Duration(g.TimeNs-target) < -time.Second || time.Duration(g.TimeNs-target) > time.Minute {
		t.Errorf("guest clock after set_time from the RTC: %+v %v, want about %s", g, err, time.Unix(0, target).UTC())
	}
	t.Logf("guest clock moved to %s (clock source %s, rtc %s)", time.Unix(0, g.TimeNs).UTC().Format(time.RFC3339), g.ClockSource, rtc)
}

// checkSSHKeys: a key added, listed, removed; ~/.ssh 0700 and
// authorized_keys 0600, owned by the user.
func checkSSHKeys(ctx context.Context, t *testing.T, m *machine) {
	// A well-formed ed25519 public key blob (the agent parses it).
	blob := []byte{0, 0, 0, 11}
	blob = append(blob, "ssh-ed25519"...)
	blob = append(blob, 0, 0, 0, 32)
	blob = append(blob, bytes.Repeat([]byte{0x5a}, 32)...)
	key := "ssh-ed25519 " + base64.StdEncoding.EncodeToString(blob) + " e2e@host"
	keys, err := m.client.SSHAddKeys(ctx, "root", []string{key}, false)
	if err != nil || !slices.Contains(keys, key) {
		t.Fatalf("add: %q %v", keys, err)
	}
	if keys, err = m.client.SSHKeys(ctx, "root"); err != nil || !slices.Contains(keys, key) {
		t.Fatalf("list: %q %v", keys, err)
	}
	modes := exec(ctx, t, m, "stat", "-c", "%a %u %n", "/root/.ssh", "/root/.ssh/authorized_keys")
	if modes != "700 0 /root/.ssh\n600 0 /root/.ssh/authorized_keys\n" {
		t.Errorf("modes:\n%s", modes)
	}
	if keys, err = m.client.SSHRemoveKeys(ctx, "root", []string{key}); err != nil || slices.Contains(keys, key) {
		t.Fatalf("remove: %q %v", keys, err)
	}
	if keys, err = m.client.SSHKeys(ctx, "root"); err != nil || slices.Contains(keys, key) {
		t.Fatalf("list after remove: %q %v", keys, err)
	}
}

// checkPassword: set_user_password changes root's hash in /etc/shadow
// (through the initramfs's chpasswd stand-in: busybox-static has none).
func checkPassword(ctx context.Context, t *testing.T, m *machine) {
	hash := func() string {
		for _, l := range strings.Split(exec(ctx, t, m, "cat", "/etc/shadow"), "\n") {
			if f := strings.Split(l, ":"); len(f) > 1 && f[0] == "root" {
				return f[1]
			}
		}
		t.Fatal("no root in /etc/shadow")
		return ""
	}
	before := hash()
	if err := m.client.SetUserPassword(ctx, "root", "e2e-Secret 1", false); err != nil {
		t.Fatal(err)
	}
	after := hash()
	if after == before || !strings.HasPrefix(after, "$6$") {
		t.Fatalf("shadow hash %q -> %q: want a new SHA-512 hash", before, after)
	}
	const crypted = "$6$e2esalt$0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ./0123456789abcdefghij"
	if err := m.client.SetUserPassword(ctx, "root", crypted, true); err != nil {
		t.Fatal(err)
	}
	if got := hash(); got != crypted {
		t.Fatalf("crypted: hash %q, want %q", got, crypted)
	}
}
