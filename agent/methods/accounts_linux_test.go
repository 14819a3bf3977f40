package methods

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kvmmanager/guest-agent/build/testenv"
)

// sshKey returns a well-formed OpenSSH public key line of type typ.
func sshKey(typ, comment string, seed byte) string {
	var blob []byte
	put := func(b []byte) {
		blob = binary.BigEndian.AppendUint32(blob, uint32(len(b)))
		blob = append(blob, b...)
	}
	put([]byte(typ))
	key := make([]byte, 32)
	for i := range key {
		key[i] = seed + byte(i)
	}
	put(key)
	line := typ + " " + base64.StdEncoding.EncodeToString(blob)
	if comment != "" {
		line += " " + comment
	}
	return line
}

func TestCheckSSHKey(t *testing.T) {
	good := sshKey("ssh-ed25519", "alice@laptop", 1)
	tests := []struct {
		key string
		ok  bool
	}{
		{good, true},
		{sshKey("ecdsa-sha2-nistp256", "", 2), true},
		{sshKey("sk-ssh-ed25519@openssh.com", "yubikey", 3), true},
		{`from="10.0.0.0/8",command="echo a b" ` + good, true},
		{"  " + good + "  ", true},
		{"", false},
		{"# " + good, false},
		{good + "\n" + good, false},
		{good + "\x00", false},
		{"ssh-ed25519", false},
		{"ssh-foo " + strings.Fields(good)[1], false},
		{"ssh-ed25519 !!!notbase64", false},
		{"ssh-rsa " + strings.Fields(good)[1], false}, // blob says ed25519
		{"opt1 opt2 " + good, false},                  // options are one token
		{"ssh-ed25519 " + base64.StdEncoding.EncodeToString([]byte{0, 0, 1, 0, 'x'}), false},
	}
	for _, tt := range tests {
		err := checkSSHKey(tt.key)
		if (err == nil) != tt.ok {
			t.Errorf("checkSSHKey(%q) = %v, want ok %v", tt.key, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("checkSSHKey(%q): error %v is not ErrInvalidArgument", tt.key, err)
		}
	}
}

// accountsHost makes a host root whose /etc/passwd has alice (uid 65534,
// home dir owned by her, mode 0755 down from /) and bob (another uid),
// and returns the service (account changes allowed) and alice's home.
func accountsHost(t *testing.T) (*Service, string) {
	t.Helper()
	testenv.NeedRoot(t)
	base := t.TempDir()
	// t.TempDir's parents are 0700: let uid 65534 reach the home.
	for p := base; p != os.TempDir() && p != "/"; p = filepath.Dir(p) {
		_ = os.Chmod(p, 0o755)
	}
	home := filepath.Join(base, "alice")
	if err := os.Mkdir(home, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	bobHome := filepath.Join(base, "bob")
	if err := os.Mkdir(bobHome, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(bobHome, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/bin/sh\nalice:x:%d:%d:Alice:%s:/bin/sh\nbob:x:4242:4242::%s:/bin/sh\nmallory:x:%d:%d::%s:/bin/sh\n",
		nobody, nobody, home, bobHome, nobody, nobody, bobHome)
	root := fakeHost(t, map[string]string{"etc/passwd": passwd})
	s := New(seedConfig(t), Options{HostRoot: root, Power: &fakePower{t: t}})
	s.cfg.AllowAccountChanges = true
	return s, home
}

func statOwner(t *testing.T, p string) (uid uint32, perm os.FileMode) {
	t.Helper()
	st, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Uid, st.Mode().Perm()
}

func TestSSHKeysLifecycle(t *testing.T) {
	s, home := accountsHost(t)
	k1, k2, k3 := sshKey("ssh-ed25519", "one", 1), sshKey("ssh-ed25519", "two", 2), sshKey("ecdsa-sha2-nistp256", "three", 3)

	if keys, err := s.SSHAuthorizedKeys("alice"); err != nil || len(keys) != 0 {
		t.Fatalf("no .ssh: keys %q, %v", keys, err)
	}
	if err := s.SSHAddAuthorizedKeys("alice", []string{k1, k2, k1}, false); err != nil {
		t.Fatal(err)
	}
	if uid, perm := statOwner(t, home+"/.ssh"); uid != nobody || perm != 0o700 {
		t.Errorf(".ssh uid %d mode %o, want %d 0700", uid, perm, nobody)
	}
	if uid, perm := statOwner(t, home+"/.ssh/authorized_keys"); uid != nobody || perm != 0o600 {
		t.Errorf("authorized_keys uid %d mode %o, want %d 0600", uid, perm, nobody)
	}
	// Comments and blank lines a user wrote stay; get leaves them out.
	b, _ := os.ReadFile(home + "/.ssh/authorized_keys")
	if string(b) != k1+"\n"+k2+"\n" {
		t.Errorf("file = %q", b)
	}
	if err := os.WriteFile(home+"/.ssh/authorized_keys", []byte("# mine\n"+k1+"\n\n"+k2+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.SSHAddAuthorizedKeys("alice", []string{k2, k3}, false); err != nil {
		t.Fatal(err)
	}
	keys, err := s.SSHAuthorizedKeys("alice")
	if err != nil || strings.Join(keys, "|") != strings.Join([]string{k1, k2, k3}, "|") {
		t.Errorf("after add: %q, %v", keys, err)
	}
	if err := s.SSHRemoveAuthorizedKeys("alice", []string{k2, sshKey("ssh-ed25519", "absent", 9)}); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(home + "/.ssh/authorized_keys")
	if string(b) != "# mine\n"+k1+"\n\n"+k3+"\n" {
		t.Errorf("after remove: %q", b)
	}
	if err := s.SSHAddAuthorizedKeys("alice", []string{k2}, true); err != nil {
		t.Fatal(err)
	}
	if keys, _ := s.SSHAuthorizedKeys("alice"); len(keys) != 1 || keys[0] != k2 {
		t.Errorf("after reset: %q", keys)
	}
	if uid, perm := statOwner(t, home+"/.ssh/authorized_keys"); uid != nobody || perm != 0o600 {
		t.Errorf("rewritten authorized_keys uid %d mode %o", uid, perm)
	}
	entries, _ := os.ReadDir(home + "/.ssh")
	if len(entries) != 1 {
		t.Errorf("temporary files left in .ssh: %v", entries)
	}
}

func TestSSHKeysRefusals(t *testing.T) {
	k := sshKey("ssh-ed25519", "k", 1)
	tests := []struct {
		name    string
		setup   func(t *testing.T, s *Service, home string)
		op      string // get, add, remove
		user    string
		keys    []string
		wantErr error  // kind, or nil for "refused with text"
		text    string // part of the message
	}{
		{"unknown user", nil, "get", "nosuch", nil, ErrNotFound, "failed to lookup user 'nosuch'"},
		{"name with colon", nil, "add", "al:ice", []string{k}, ErrInvalidArgument, "forbidden characters"},
		{"bad key", nil, "add", "alice", []string{"ssh-ed25519 AAAA"}, ErrInvalidArgument, "invalid OpenSSH public key"},
		{"comment as key", nil, "remove", "alice", []string{"#x"}, ErrInvalidArgument, "invalid OpenSSH public key: '#x'"},
		{"disabled", func(t *testing.T, s *Service, _ string) { s.cfg.AllowAccountChanges = false }, "add", "alice", []string{k}, ErrNotAllowed, "allow_account_changes"},
		{"disabled remove", func(t *testing.T, s *Service, _ string) { s.cfg.AllowAccountChanges = false }, "remove", "alice", []string{k}, ErrNotAllowed, "allow_account_changes"},
		{".ssh is a symlink", func(t *testing.T, s *Service, home string) {
			mustSymlink(t, t.TempDir(), home+"/.ssh")
		}, "add", "alice", []string{k}, nil, "symlink"},
		{".ssh is a symlink (get)", func(t *testing.T, s *Service, home string) {
			mustSymlink(t, "/etc", home+"/.ssh")
		}, "get", "alice", nil, nil, "symlink"},
		{"authorized_keys is a symlink", func(t *testing.T, s *Service, home string) {
			mkSSH(t, home, nobody)
			mustSymlink(t, "/etc/shadow", home+"/.ssh/authorized_keys")
		}, "get", "alice", nil, nil, "symlink"},
		{"authorized_keys owned by root", func(t *testing.T, s *Service, home string) {
			mkSSH(t, home, nobody)
			if err := os.WriteFile(home+"/.ssh/authorized_keys", []byte(k+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "get", "alice", nil, nil, "owned by uid 0"},
		{"authorized_keys hard link", func(t *testing.T, s *Service, home string) {
			mkSSH(t, home, nobody)
			other := filepath.Join(home, "elsewhere")
			if err := os.WriteFile(other, []byte(k+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			_ = os.Chown(other, nobody, nobody)
			if err := os.Link(other, home+"/.ssh/authorized_keys"); err != nil {
				t.Fatal(err)
			}
		}, "add", "alice", []string{k}, nil, "hard links"},
		{".ssh owned by someone else", func(t *testing.T, s *Service, home string) {
			mkSSH(t, home, 4242)
		}, "add", "alice", []string{k}, nil, "owned by uid 4242"},
		{"home owned by someone else", nil, "add", "mallory", []string{k}, nil, "is owned by uid 4242"},
		{"frozen", func(t *testing.T, s *Service, _ string) {
			s.guest.freeze.mu.Lock()
			s.guest.freeze.frozen = true
			s.guest.freeze.mu.Unlock()
		}, "add", "alice", []string{k}, ErrFrozen, "frozen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, home := accountsHost(t)
			if tt.setup != nil {
				tt.setup(t, s, home)
			}
			var err error
			switch tt.op {
			case "get":
				_, err = s.SSHAuthorizedKeys(tt.user)
			case "add":
				err = s.SSHAddAuthorizedKeys(tt.user, tt.keys, false)
			case "remove":
				err = s.SSHRemoveAuthorizedKeys(tt.user, tt.keys)
			}
			if err == nil || !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("err = %v, want one with %q", err, tt.text)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want kind %v", err, tt.wantErr)
			}
		})
	}
}

func mkSSH(t *testing.T, home string, uid int) {
	t.Helper()
	if err := os.Mkdir(home+"/.ssh", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home+"/.ssh", uid, uid); err != nil {
		t.Fatal(err)
	}
}

// TestSSHKeysSymlinkRace attacks as the user would: uid 65534 swaps its
// ~/.ssh (and the file in it) for symlinks to a root-owned directory in a
// loop while the agent adds keys. No write may ever land in that directory,
// and every add either succeeds in the real ~/.ssh or is refused.
func TestSSHKeysSymlinkRace(t *testing.T) {
	s, home := accountsHost(t)
	testenv.NeedCommands(t, "sh", "mv", "ln", "rm")
	victim := filepath.Join(filepath.Dir(home), "victim")
	if err := os.Mkdir(victim, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(victim, "authorized_keys"), []byte("root's own\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mkSSH(t, home, nobody)
	script := `cd "$1" || exit 1
while :; do
  mv .ssh .ssh-real 2>/dev/null; ln -s "$2" .ssh 2>/dev/null
  rm -f .ssh 2>/dev/null; mv .ssh-real .ssh 2>/dev/null
  ln -s "$2/authorized_keys" .ssh/authorized_keys.new 2>/dev/null && mv -f .ssh/authorized_keys.new .ssh/authorized_keys 2>/dev/null
  rm -f .ssh/authorized_keys 2>/dev/null
done`
	attacker := exec.Command("/bin/sh", "-c", script, "attacker", home, victim)
	attacker.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}, Setpgid: true}
	if err := attacker.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = syscall.Kill(-attacker.Process.Pid, syscall.SIGKILL)
		_ = attacker.Wait()
	}()
	ok, refused := 0, 0
	deadline := time.Now().Add(3 * time.Second)
	for i := 0; i < 2000 && time.Now().Before(deadline); i++ {
		err := s.SSHAddAuthorizedKeys("alice", []string{sshKey("ssh-ed25519", fmt.Sprint("race", i), byte(i))}, i%2 == 0)
		if err == nil {
			ok++
		} else {
			refused++
		}
	}
	_ = syscall.Kill(-attacker.Process.Pid, syscall.SIGKILL)
	_ = attacker.Wait()
	t.Logf("adds: %d succeeded, %d refused", ok, refused)
	entries, err := os.ReadDir(victim)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("files appeared in the victim directory: %v", entries)
	}
	if b, _ := os.ReadFile(filepath.Join(victim, "authorized_keys")); string(b) != "root's own\n" {
		t.Errorf("victim file changed: %q", b)
	}
	if ok == 0 && refused == 0 {
		t.Error("no add ran")
	}
}

// chpasswdRecorder is a fake chpasswd: it records its argv and stdin, and
// fails when stdin names the user "fail".
func chpasswdRecorder(t *testing.T) (path, argsFile, stdinFile string) {
	dir := t.TempDir()
	argsFile, stdinFile = filepath.Join(dir, "args"), filepath.Join(dir, "stdin")
	path = filepath.Join(dir, "chpasswd")
	script := fmt.Sprintf("#!/bin/sh\nprintf '%%s\\n' \"$@\" > %s\ncat > %s\ngrep -q '^fail:' %s && { echo 'chpasswd: user fail: boom' >&2; exit 1; }\nexit 0\n", argsFile, stdinFile, stdinFile)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, argsFile, stdinFile
}

func TestSetUserPassword(t *testing.T) {
	tests := []struct {
		name      string
		user, pw  string
		crypted   bool
		disabled  bool
		wantArgs  string
		wantStdin string
		wantErr   error
		text      string
	}{
		{"plain", "alice", "s3cret:with colon", false, false, "\n", "alice:s3cret:with colon\n", nil, ""},
		{"crypted", "alice", "$6$salt$hash", true, false, "-e\n", "alice:$6$salt$hash\n", nil, ""},
		{"disabled", "alice", "x", false, true, "", "", ErrNotAllowed, "allow_account_changes"},
		{"unknown user", "nosuch", "x", false, false, "", "", ErrNotFound, "failed to lookup user 'nosuch'"},
		{"colon in name", "a:b", "x", false, false, "", "", ErrInvalidArgument, "forbidden characters in username"},
		{"newline in name", "a\nroot", "x", false, false, "", "", ErrInvalidArgument, "forbidden characters in username"},
		{"newline in password", "alice", "x\nroot:y", false, false, "", "", ErrInvalidArgument, "forbidden characters in raw password"},
		{"NUL in password", "alice", "x\x00y", false, false, "", "", ErrInvalidArgument, "forbidden characters"},
		{"colon in hash", "alice", "$6$a:b", true, false, "", "", ErrInvalidArgument, "forbidden characters in crypted password"},
		{"empty", "alice", "", false, false, "", "", ErrInvalidArgument, "empty"},
		{"chpasswd fails", "fail", "x", false, false, "\n", "fail:x\n", nil, "child process has failed to set user password: exit status 1: chpasswd: user fail: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := fakeHost(t, map[string]string{"etc/passwd": "alice:x:1000:1000::/home/alice:/bin/sh\nfail:x:1001:1001::/home/fail:/bin/sh\n"})
			s := New(seedConfig(t), Options{HostRoot: root, Power: &fakePower{t: t}})
			s.cfg.AllowAccountChanges = !tt.disabled
			path, argsFile, stdinFile := chpasswdRecorder(t)
			s.guest.chpasswd = path
			err := s.SetUserPassword(context.Background(), tt.user, tt.pw, tt.crypted)
			args, _ := os.ReadFile(argsFile)
			stdin, _ := os.ReadFile(stdinFile)
			if tt.text != "" {
				if err == nil || !strings.Contains(err.Error(), tt.text) {
					t.Fatalf("err = %v, want %q", err, tt.text)
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Errorf("err = %v, want kind %v", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if string(args) != tt.wantArgs || string(stdin) != tt.wantStdin {
				t.Errorf("chpasswd argv %q stdin %q, want %q %q", args, stdin, tt.wantArgs, tt.wantStdin)
			}
			if tt.pw != "" && strings.Contains(string(args), tt.pw) {
				t.Errorf("password on chpasswd's command line: %q", args)
			}
		})
	}
}

// TestSetUserPasswordRealChpasswd runs the real chpasswd -e on a copy of
// passwd/shadow in a directory (chpasswd -R), and checks the hash landed.
func TestSetUserPasswordRealChpasswd(t *testing.T) {
	testenv.NeedRoot(t)
	paths := testenv.NeedCommands(t, "chpasswd")
	chroot := fakeHost(t, map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
		"etc/shadow": "root:*:19000:0:99999:7:::\nalice:!:19000:0:99999:7:::\n",
		"etc/group":  "root:x:0:\nalice:x:1000:\n",
	})
	wrapper := filepath.Join(t.TempDir(), "chpasswd")
	if err := os.WriteFile(wrapper, []byte(fmt.Sprintf("#!/bin/sh\nexec %s -R %s \"$@\"\n", paths[0], chroot)), 0o755); err != nil {
		t.Fatal(err)
	}
	s := New(seedConfig(t), Options{HostRoot: chroot, Power: &fakePower{t: t}})
	s.cfg.AllowAccountChanges = true
	s.guest.chpasswd = wrapper
	const hash = "$6$kvmtest$Zk9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eHF1dXhxdXV4cXV1eHF1dXhxdXV4cXV1eHF1dXhxdXV4"
	if err := s.SetUserPassword(context.Background(), "alice", hash, true); err != nil {
		t.Fatal(err)
	}
	shadow, _ := os.ReadFile(filepath.Join(chroot, "etc/shadow"))
	if !strings.Contains(string(shadow), "alice:"+hash+":") {
		t.Errorf("shadow = %q, want alice's hash set", shadow)
	}
}
