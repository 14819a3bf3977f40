package methods

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kvmmanager/guest-agent/agent/policy"
)

// chpasswdTimeout bounds one chpasswd run.
const chpasswdTimeout = 30 * time.Second

// account is a user of /etc/passwd.
type account struct {
	name     string
	uid, gid int
	home     string
}

// lookupUser finds name in the host's /etc/passwd (local accounts only: the
// agent does not ask NSS). A missing user is ErrNotFound.
func (s *Service) lookupUser(name string) (account, error) {
	p := s.hostPath("/etc/passwd")
	data, err := os.ReadFile(p)
	if err != nil {
		return account{}, wrapErr(nil, err, "failed to lookup user '%s': read %s", name, p)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Split(line, ":")
		if len(f) < 7 || f[0] != name {
			continue
		}
		uid, err1 := strconv.Atoi(f[2])
		gid, err2 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil || uid < 0 || gid < 0 {
			return account{}, opErr(nil, "failed to lookup user '%s': malformed entry in %s", name, p)
		}
		return account{name: name, uid: uid, gid: gid, home: f[5]}, nil
	}
	return account{}, opErr(ErrNotFound, "failed to lookup user '%s': no such user in %s", name, p)
}

// checkUsername refuses names that could not be a passwd entry and
// would break chpasswd's "name:password" lines.
func checkUsername(name string) error {
	if name == "" || strings.ContainsAny(name, ":\n\r\x00/") || name == "." || name == ".." {
		return opErr(ErrInvalidArgument, "forbidden characters in username")
	}
	return nil
}

// accountChangesAllowed is the gate of every operation that changes
// credentials.
func (s *Service) accountChangesAllowed() error {
	if !s.cfg.AllowAccountChanges {
		return opErr(ErrNotAllowed, "account changes are disabled on this guest (allow_account_changes is false in the agent's configuration)")
	}
	if s.Frozen() {
		return opErr(ErrFrozen, "file systems are frozen; thaw them before changing accounts")
	}
	return nil
}

// SetUserPassword sets the password of a local user with chpasswd (-e when
// crypted: password is then a crypt(3) hash stored as is). The
// "name:password" line goes to chpasswd's stdin, never its argv. Newlines
// and NUL are refused in both; ':' in a name or a hash (chpasswd splits at
// the first ':', so a plain password may contain it). Needs
// allow_account_changes.
func (s *Service) SetUserPassword(ctx context.Context, username, password string, crypted bool) error {
	if err := s.accountChangesAllowed(); err != nil {
		return err
	}
	if err := checkUsername(username); err != nil {
		return err
	}
	if password == "" {
		return opErr(ErrInvalidArgument, "the password is empty")
	}
	if strings.ContainsAny(password, "\n\r\x00") || (crypted && strings.Contains(password, ":")) {
		if crypted {
			return opErr(ErrInvalidArgument, "forbidden characters in crypted password")
		}
		return opErr(ErrInvalidArgument, "forbidden characters in raw password")
	}
	if _, err := s.lookupUser(username); err != nil {
		return err
	}
	path := s.guest.chpasswd
	if path == "" {
		var err error
		if path, err = findSystemProgram("chpasswd"); err != nil {
			return opErr(ErrUnsupported, "chpasswd not found in %s", policy.SystemPATH)
		}
	}
	var args []string
	if crypted {
		args = append(args, "-e")
	}
	cmd := exec.Command(path, args...)
	cmd.Env = []string{"PATH=" + policy.SystemPATH, "LANG=C"}
	cmd.Dir = "/"
	cmd.Stdin = strings.NewReader(username + ":" + password + "\n")
	out := newCappedBuffer(4096)
	cmd.Stdout, cmd.Stderr = out, out
	if err := s.runHelper(ctx, cmd, chpasswdTimeout); err != nil {
		text, _ := out.result()
		msg := strings.TrimSpace(text)
		if msg != "" {
			return opErr(nil, "child process has failed to set user password: %v: %s", err, msg)
		}
		return opErr(nil, "child process has failed to set user password: %v", err)
	}
	s.log.Info("password set", "user", username, "crypted", crypted)
	return nil
}

// findSystemProgram finds name in the fixed, root-owned system PATH.
func findSystemProgram(name string) (string, error) {
	for _, dir := range filepath.SplitList(policy.SystemPATH) {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}
