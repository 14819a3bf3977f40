package policy

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"golang.org/x/sys/windows"
)

// CheckChain checks a configured path (an allowed entry, or an absolute
// whitelisted command when file is set): it must pass Clean's name rules
// (no device, stream, short-name or prefix alias), and no existing
// component may be a junction or symbolic link, which would make the entry
// mean another place. (Whether users other than Administrators may write a
// component's directory, which the Unix rules also check, is not checked on
// Windows yet: its ACLs are the administrator's choice.)
func CheckChain(path string, file bool) error {
	clean, err := Clean(path)
	if err != nil {
		return err
	}
	cur := clean[:3] // C:\
	for _, c := range strings.Split(clean[3:], `\`) {
		if c == "" {
			continue
		}
		cur = filepath.Join(cur, c)
		p16, err := windows.UTF16PtrFromString(cur)
		if err != nil {
			return err
		}
		attrs, err := windows.GetFileAttributes(p16)
		if err != nil {
			if errors.Is(err, windows.ERROR_FILE_NOT_FOUND) || errors.Is(err, windows.ERROR_PATH_NOT_FOUND) {
				return nil // missing from here on
			}
			return fmt.Errorf("%s: %w", cur, err)
		}
		if attrs&windows.FILE_ATTRIBUTE_REPARSE_POINT != 0 {
			return fmt.Errorf("%s is a junction or symbolic link: %w", cur, ErrUntrusted)
		}
	}
	return nil
}
