package methods

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// maxAuthorizedKeysSize bounds the authorized_keys file the agent reads.
const maxAuthorizedKeysSize = 1 << 20

// sshKeyTypes are the OpenSSH public key and certificate types accepted.
var sshKeyTypes = []string{
	"ssh-ed25519", "ssh-rsa", "ssh-dss", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
	"ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
	"ssh-ed25519-cert-v01@openssh.com", "ssh-rsa-cert-v01@openssh.com", "ssh-dss-cert-v01@openssh.com",
	"ecdsa-sha2-nistp256-cert-v01@openssh.com", "ecdsa-sha2-nistp384-cert-v01@openssh.com",
	"ecdsa-sha2-nistp521-cert-v01@openssh.com", "sk-ssh-ed25519-cert-v01@openssh.com",
	"sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
}

func isSSHKeyType(t string) bool { return slices.Contains(sshKeyTypes, t) }

// checkSSHKey accepts one line of authorized_keys format: optional options,
// a known key type, and the base64 key blob, whose embedded type must be
// that key type; a comment may follow.
func checkSSHKey(key string) error {
	bad := func(why string) error {
		return opErr(ErrInvalidArgument, "invalid OpenSSH public key: '%s': %s", key, why)
	}
	if strings.ContainsAny(key, "\n\r\x00") {
		return bad("more than one line")
	}
	k := strings.TrimSpace(key)
	if k == "" || k[0] == '#' {
		return bad("empty or a comment")
	}
	tok := sshTokens(k)
	i := slices.IndexFunc(tok, isSSHKeyType)
	if i < 0 || i > 1 {
		return bad("no known key type")
	}
	if i+1 >= len(tok) {
		return bad("no key data")
	}
	blob, err := base64.StdEncoding.DecodeString(tok[i+1])
	if err != nil || len(blob) < 4 {
		return bad("key data is not base64")
	}
	n := binary.BigEndian.Uint32(blob)
	if uint64(n) > uint64(len(blob)-4) || string(blob[4:4+n]) != tok[i] {
		return bad("key data does not hold a " + tok[i] + " key")
	}
	return nil
}

// sshTokens splits an authorized_keys line at blanks outside double quotes
// (options such as command="a b" stay one token).
func sshTokens(line string) []string {
	var out []string
	var cur strings.Builder
	quoted := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\\' && quoted && i+1 < len(line):
			cur.WriteByte(c)
			cur.WriteByte(line[i+1])
			i++
		case c == '"':
			quoted = !quoted
			cur.WriteByte(c)
		case (c == ' ' || c == '\t') && !quoted:
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteByte(c)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

func checkSSHKeys(keys []string) error {
	for _, k := range keys {
		if err := checkSSHKey(k); err != nil {
			return err
		}
	}
	return nil
}

// SSHAuthorizedKeys returns the keys of the user's ~/.ssh/authorized_keys
// (blank and comment lines left out). No file, or no ~/.ssh, means no keys.
func (s *Service) SSHAuthorizedKeys(username string) ([]string, error) {
	if err := checkUsername(username); err != nil {
		return nil, err
	}
	acct, err := s.lookupUser(username)
	if err != nil {
		return nil, err
	}
	ssh, err := openSSHDir(acct, false)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return []string{}, nil
		}
		return nil, err
	}
	defer unix.Close(ssh)
	lines, err := readAuthorizedKeys(ssh, acct)
	if err != nil {
		return nil, err
	}
	out := []string{}
	for _, l := range lines {
		if t := strings.TrimSpace(l); t != "" && t[0] != '#' {
			out = append(out, t)
		}
	}
	return out, nil
}

// sshKeysAccount checks a request to change a user's authorized keys:
// allow_account_changes, the user name and the keys; it returns the user.
func (s *Service) sshKeysAccount(username string, keys []string) (account, error) {
	if err := s.accountChangesAllowed(); err != nil {
		return account{}, err
	}
	if err := checkUsername(username); err != nil {
		return account{}, err
	}
	if err := checkSSHKeys(keys); err != nil {
		return account{}, err
	}
	return s.lookupUser(username)
}

// SSHAddAuthorizedKeys appends the keys missing from the user's
// ~/.ssh/authorized_keys (reset: replaces the file's content with keys),
// creating ~/.ssh (0700) and the file (0600) owned by the user. Needs
// allow_account_changes.
func (s *Service) SSHAddAuthorizedKeys(username string, keys []string, reset bool) error {
	acct, err := s.sshKeysAccount(username, keys)
	if err != nil {
		return err
	}
	ssh, err := openSSHDir(acct, true)
	if err != nil {
		return err
	}
	defer unix.Close(ssh)
	var lines []string
	if !reset {
		if lines, err = readAuthorizedKeys(ssh, acct); err != nil {
			return err
		}
	}
	have := map[string]bool{}
	for _, l := range lines {
		have[strings.TrimSpace(l)] = true
	}
	for _, k := range keys {
		k = strings.TrimSpace(k)
		if !have[k] {
			lines = append(lines, k)
			have[k] = true
		}
	}
	if err := writeAuthorizedKeys(ssh, acct, lines); err != nil {
		return err
	}
	s.log.Info("ssh authorized keys added", "user", username, "keys", len(keys), "reset", reset)
	return nil
}

// SSHRemoveAuthorizedKeys removes the keys from the user's
// ~/.ssh/authorized_keys; keys that are not there, or no file, are no
// error. Needs allow_account_changes.
func (s *Service) SSHRemoveAuthorizedKeys(username string, keys []string) error {
	acct, err := s.sshKeysAccount(username, keys)
	if err != nil {
		return err
	}
	ssh, err := openSSHDir(acct, false)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return err
	}
	defer unix.Close(ssh)
	lines, err := readAuthorizedKeys(ssh, acct)
	if err != nil || lines == nil {
		return err
	}
	drop := map[string]bool{}
	for _, k := range keys {
		drop[strings.TrimSpace(k)] = true
	}
	kept := slices.DeleteFunc(slices.Clone(lines), func(l string) bool { return drop[strings.TrimSpace(l)] })
	if len(kept) == len(lines) {
		return nil
	}
	if err := writeAuthorizedKeys(ssh, acct, kept); err != nil {
		return err
	}
	s.log.Info("ssh authorized keys removed", "user", username, "keys", len(lines)-len(kept))
	return nil
}

// openSSHDir opens the user's ~/.ssh without following a symlink there:
// the home directory (root's choice in /etc/passwd, so its path may hold
// symlinks) must belong to the user or root; ".ssh" is opened relative to
// it with O_NOFOLLOW and must be a directory the user owns. With create, a
// missing .ssh is made 0700 and given to the user. A missing one is an
// error wrapping ENOENT otherwise.
func openSSHDir(a account, create bool) (int, error) {
	home, err := unix.Open(a.home, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, wrapErr(nil, err, "failed to open the home directory %s of '%s'", a.home, a.name)
	}
	defer unix.Close(home)
	var st unix.Stat_t
	if err := unix.Fstat(home, &st); err != nil {
		return -1, wrapErr(nil, err, "failed to stat %s", a.home)
	}
	if int(st.Uid) != a.uid && st.Uid != 0 {
		return -1, opErr(nil, "refusing %s: the home directory of '%s' is owned by uid %d", a.home, a.name, st.Uid)
	}
	dir := a.home + "/.ssh"
	created := false
	fd, err := unix.Openat(home, ".ssh", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) && create {
		if err := unix.Mkdirat(home, ".ssh", 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, wrapErr(nil, err, "failed to create %s", dir)
		}
		created = true
		fd, err = unix.Openat(home, ".ssh", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			return -1, opErr(nil, "refusing %s: it is a symlink or not a directory", dir)
		}
		return -1, wrapErr(nil, err, "failed to open %s", dir)
	}
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, wrapErr(nil, err, "failed to stat %s", dir)
	}
	if created && st.Uid == 0 && int(st.Uid) != a.uid {
		// Ours, just made: give it to the user (on the descriptor, so a
		// swapped path cannot redirect the change).
		if err := unix.Fchown(fd, a.uid, a.gid); err != nil {
			unix.Close(fd)
			return -1, wrapErr(nil, err, "failed to set ownership of %s", dir)
		}
		st.Uid = uint32(a.uid)
	}
	if int(st.Uid) != a.uid {
		unix.Close(fd)
		return -1, opErr(nil, "refusing %s: owned by uid %d, not by '%s'", dir, st.Uid, a.name)
	}
	if created {
		if err := unix.Fchmod(fd, 0o700); err != nil {
			unix.Close(fd)
			return -1, wrapErr(nil, err, "failed to set permissions of %s", dir)
		}
	}
	return fd, nil
}

// readAuthorizedKeys reads ssh/authorized_keys (nil, nil when absent). A
// symlink, a hard link, a file that is not regular or not the user's is
// refused.
func readAuthorizedKeys(ssh int, a account) ([]string, error) {
	path := a.home + "/.ssh/authorized_keys"
	fd, err := unix.Openat(ssh, "authorized_keys", unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if errors.Is(err, unix.ELOOP) {
		return nil, opErr(nil, "refusing %s: it is a symlink", path)
	}
	if err != nil {
		return nil, wrapErr(nil, err, "failed to read '%s'", path)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, wrapErr(nil, err, "failed to stat %s", path)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return nil, opErr(nil, "refusing %s: not a regular file", path)
	case int(st.Uid) != a.uid:
		return nil, opErr(nil, "refusing %s: owned by uid %d, not by '%s'", path, st.Uid, a.name)
	case st.Nlink != 1:
		return nil, opErr(nil, "refusing %s: it has %d hard links", path, st.Nlink)
	case st.Size > maxAuthorizedKeysSize:
		return nil, opErr(nil, "refusing %s: larger than %d bytes", path, maxAuthorizedKeysSize)
	}
	buf := make([]byte, 0, st.Size+1)
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, 4096)
		}
		n, err := unix.Read(fd, buf[len(buf):cap(buf)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, wrapErr(nil, err, "failed to read '%s'", path)
		}
		if n == 0 {
			break
		}
		buf = buf[:len(buf)+n]
		if len(buf) > maxAuthorizedKeysSize {
			return nil, opErr(nil, "refusing %s: larger than %d bytes", path, maxAuthorizedKeysSize)
		}
	}
	lines := strings.Split(string(bytes.TrimRight(buf, "\n")), "\n")
	if len(buf) == 0 {
		lines = []string{}
	}
	return lines, nil
}

// writeAuthorizedKeys replaces ssh/authorized_keys atomically: a new file
// (O_EXCL, O_NOFOLLOW) in the same directory, owned by the user, mode
// 0600, synced, then renamed over the old name, all relative to the
// directory descriptor.
func writeAuthorizedKeys(ssh int, a account, lines []string) error {
	path := a.home + "/.ssh/authorized_keys"
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := ".authorized_keys.kvmmanager-" + hex.EncodeToString(rnd[:])
	fd, err := unix.Openat(ssh, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return wrapErr(nil, err, "failed to write to '%s'", path)
	}
	ok := false
	defer func() {
		if fd >= 0 {
			unix.Close(fd)
		}
		if !ok {
			_ = unix.Unlinkat(ssh, tmp, 0)
		}
	}()
	var content []byte
	if len(lines) > 0 {
		content = []byte(strings.Join(lines, "\n") + "\n")
	}
	for len(content) > 0 {
		n, err := unix.Write(fd, content)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return wrapErr(nil, err, "failed to write to '%s'", path)
		}
		content = content[n:]
	}
	if err := unix.Fchown(fd, a.uid, a.gid); err != nil {
		return wrapErr(nil, err, "failed to set ownership of '%s'", path)
	}
	if err := unix.Fchmod(fd, 0o600); err != nil {
		return wrapErr(nil, err, "failed to set permissions of '%s'", path)
	}
	if err := unix.Fsync(fd); err != nil {
		return wrapErr(nil, err, "failed to write to '%s'", path)
	}
	err = unix.Close(fd)
	fd = -1
	if err != nil {
		return wrapErr(nil, err, "failed to write to '%s'", path)
	}
	if err := unix.Renameat(ssh, tmp, ssh, "authorized_keys"); err != nil {
		return wrapErr(nil, err, "failed to write to '%s'", path)
	}
	ok = true
	_ = unix.Fsync(ssh)
	return nil
}
