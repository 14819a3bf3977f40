package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/windows"
)

func TestCleanWindowsTricks(t *testing.T) {
	tests := []struct {
		path string
		want string // cleaned, or "" when refused
		err  error
	}{
		{`C:\Windows\Temp\a.txt`, `C:\Windows\Temp\a.txt`, nil},
		{`c:/windows/temp/a.txt`, `c:\windows\temp\a.txt`, nil},
		{`C:\Windows\Temp\..\System32\config\SAM`, `C:\Windows\System32\config\SAM`, nil}, // lexical; Entry refuses it
		{`C:\Windows\Temp\.\x`, `C:\Windows\Temp\x`, nil},
		{`Windows\Temp\x`, "", ErrNotAbsolute},
		{`\Windows\Temp\x`, "", ErrNotAbsolute},
		{`C:Windows\Temp\x`, "", ErrNotAbsolute},
		{`1:\x`, "", ErrNotAbsolute},
		{``, "", ErrNotAbsolute},
		{`\\?\C:\Windows\Temp\x`, "", ErrForbiddenName},
		{`\??\C:\Windows\Temp\x`, "", ErrForbiddenName},
		{`\\.\C:\Windows\Temp\x`, "", ErrForbiddenName},
		{`\\.\PhysicalDrive0`, "", ErrForbiddenName},
		{`\\server\share\x`, "", ErrForbiddenName},
		{`//server/share/x`, "", ErrForbiddenName},
		{`C:\Windows\Temp\CON`, "", ErrForbiddenName},
		{`C:\Windows\Temp\nul.txt`, "", ErrForbiddenName},
		{`C:\Windows\Temp\Com1`, "", ErrForbiddenName},
		{`C:\Windows\Temp\LPT9.log`, "", ErrForbiddenName},
		{`C:\Windows\Temp\COM¹`, "", ErrForbiddenName},
		{`C:\Windows\Temp\CONIN$`, "", ErrForbiddenName},
		{`C:\Windows\Temp\aux .txt`, "", ErrForbiddenName},
		{`C:\Windows\Temp\console.txt`, `C:\Windows\Temp\console.txt`, nil},
		{`C:\Windows\Temp\COM10`, `C:\Windows\Temp\COM10`, nil},
		{`C:\Windows\Temp\a.txt:secret`, "", ErrForbiddenName},
		{`C:\Windows\Temp\a.txt::$DATA`, "", ErrForbiddenName},
		{`C:\Windows\Temp\x.`, "", ErrForbiddenName},
		{`C:\Windows\Temp\x `, "", ErrForbiddenName},
		{`C:\PROGRA~1\x`, "", ErrForbiddenName},
		{`C:\Windows\Temp\LONGNA~12.TXT`, "", ErrForbiddenName},
		{`C:\Windows\Temp\a~b.txt`, `C:\Windows\Temp\a~b.txt`, nil},
		{`C:\Windows\Temp\~1`, `C:\Windows\Temp\~1`, nil},
		{`C:\Windows\Temp\a*`, "", ErrForbiddenName},
		{`C:\Windows\Temp\a?`, "", ErrForbiddenName},
		{"C:\\Windows\\Temp\\a\x00b", "", ErrForbiddenName},
		{"C:\\Windows\\Temp\\a\x01b", "", ErrForbiddenName},
	}
	for _, tt := range tests {
		got, err := Clean(tt.path)
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("Clean(%q) = %q, %v; want %v", tt.path, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Clean(%q) = %q, %v; want %q", tt.path, got, err, tt.want)
		}
	}
}

func TestEntryCaseInsensitiveWholeComponents(t *testing.T) {
	p := NewPaths("allowed_read_paths", []string{`C:\Windows\Temp`, `C:\ProgramData\kvmmanager-agent`, `D:\data\one.txt`, `E:\`})
	tests := []struct {
		path, entry string
	}{
		{`C:\Windows\Temp\x`, `C:\Windows\Temp`},
		{`c:\WINDOWS\temp\X`, `C:\Windows\Temp`},
		{`C:\Windows\Temp`, `C:\Windows\Temp`},
		{`C:\Windows\TempFoo\x`, ""},
		{`C:\Windows\System32\config\SAM`, ""},
		{`D:\data\one.txt`, `D:\data\one.txt`},
		{`D:\data\one.txt2`, ""},
		{`D:\data\two.txt`, ""},
		{`E:\anything\here`, `E:\`},
		{`F:\Windows\Temp\x`, ""},
	}
	for _, tt := range tests {
		got, err := p.Entry(tt.path)
		if tt.entry == "" {
			if !errors.Is(err, ErrOutside) {
				t.Errorf("Entry(%q) = %q, %v; want ErrOutside", tt.path, got, err)
			}
			continue
		}
		if err != nil || got != tt.entry {
			t.Errorf("Entry(%q) = %q, %v; want %q", tt.path, got, err, tt.entry)
		}
	}
}

func TestContainsFinalPath(t *testing.T) {
	tests := []struct {
		final, entry, entryFinal string
		want                     bool
	}{
		{`\\?\C:\Windows\Temp\x`, `C:\Windows\Temp`, `\\?\C:\Windows\Temp`, true},
		{`\\?\C:\Windows\System32\x`, `C:\Windows\Temp`, `\\?\C:\Windows\Temp`, false}, // a junction led out
		{`\\?\D:\real\x`, `C:\data`, `\\?\D:\real`, true},                              // the entry itself is a junction
		{`\\?\C:\data\x`, `C:\data`, `\\?\D:\real`, false},
		{`\\?\UNC\server\share\x`, `C:\Windows\Temp`, `\\?\C:\Windows\Temp`, false},
		{`\\?\Volume{1234}\x`, `C:\Windows\Temp`, `\\?\C:\Windows\Temp`, false},
		{`\\?\C:\new\file`, `C:\new\file`, ``, true},
	}
	for _, tt := range tests {
		if got := Contains(tt.final, tt.entry, tt.entryFinal); got != tt.want {
			t.Errorf("Contains(%q, %q, %q) = %v, want %v", tt.final, tt.entry, tt.entryFinal, got, tt.want)
		}
	}
}

// TestFinalPathResolvesLinks checks, on the running Windows (Wine in the
// tests), that the final path of a handle opened through a directory
// symbolic link is the link's target: what stops a link from escaping.
func TestFinalPathResolvesLinks(t *testing.T) {
	dir := t.TempDir()
	inside := filepath.Join(dir, "inside")
	outside := filepath.Join(dir, "outside")
	for _, d := range []string{inside, outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(inside, "link")
	if err := os.Symlink(`..\outside`, link); err != nil {
		t.Skipf("cannot create a directory symbolic link here: %v", err)
	}
	p16, _ := windows.UTF16PtrFromString(filepath.Join(link, "secret"))
	h, err := windows.CreateFile(p16, windows.GENERIC_READ, windows.FILE_SHARE_READ, nil, windows.OPEN_EXISTING,
		windows.FILE_FLAG_OPEN_REPARSE_POINT|windows.FILE_FLAG_BACKUP_SEMANTICS, 0)
	if err != nil {
		// Wine does not traverse directory symbolic links in the middle of
		// a path: nothing was opened, so nothing escaped.
		t.Logf("opening through the link failed (%v): no escape possible here", err)
		return
	}
	defer windows.CloseHandle(h)
	final, err := FinalPath(h)
	if err != nil {
		t.Fatal(err)
	}
	entryFinal, err := EntryFinalPath(inside)
	if err != nil {
		t.Fatal(err)
	}
	if Contains(final, inside, entryFinal) || !strings.HasSuffix(strings.ToLower(final), `\outside\secret`) {
		t.Errorf("final path %q (entry %q): the link was not resolved out of the entry", final, entryFinal)
	}
}
